package scrub

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"ipv4", "from 192.0.2.7 ok", "from [scrubbed] ok"},
		{"ipv4 port", "dial 198.51.100.9:443: refused", "dial [scrubbed]: refused"},
		{"ipv6 full", "2001:0db8:0000:0000:0000:ff00:0042:8329 x", "[scrubbed] x"},
		{"ipv6 compressed", "peer 2001:db8::1 gone", "peer [scrubbed] gone"},
		{"ipv6 bracket port", "ws [2001:db8::1]:8080/x", "ws [scrubbed]/x"},
		{"ipv6 loopback", "on ::1 now", "on [scrubbed] now"},
		{"ipv4 mapped", "::ffff:1.2.3.4", "[scrubbed]"},
		{"two", "1.2.3.4 and 5.6.7.8", "[scrubbed] and [scrubbed]"},
		{"url", "ws://203.0.113.5:80/?client_ip=203.0.113.6", "ws://[scrubbed]/?client_ip=[scrubbed]"},
		{"candidate", "a=candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host", "a=candidate:1 1 udp 2130706431 [scrubbed] 5000 typ host"},
		{"version kept", "snowflake 2.13.1 started", "snowflake 2.13.1 started"},
		{"time kept", "at 12:34:56 done", "at 12:34:56 done"},
		{"no address", "nothing here", "nothing here"},
		{"sentence end", "from 192.0.2.1.", "from [scrubbed]."},
		{"glued", "cafe:192.0.2.1", "cafe:[scrubbed]"},
		{"zone", "fe80::1%eth0 up", "[scrubbed] up"},
		{"hex clientid kept", "client 0123456789abcdef", "client 0123456789abcdef"},
		{"ipv6 after ipv4 with port", "x 10.0.0.1:2001:db8::5 y", "x [scrubbed]:[scrubbed] y"},
		{"ipv6 glued to ipv4", "192.0.2.1::1", "[scrubbed][scrubbed]"},
		{"unspecified glued", "0.0.0.0::", "[scrubbed][scrubbed]"},
		{"bracketed then ipv4", "[2001:db8::1]:443:10.0.0.2", "[scrubbed]:[scrubbed]"},
		{"five parts", "v1.2.3.4.5", "v[scrubbed].5"},
		{"fingerprint pairs", "sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89", "sha-256 [scrubbed]:[scrubbed]"},
		{"ratio kept", "ratio 1:2", "ratio 1:2"},
		// 8192 clock times use up the 64 KiB search budget.
		{"over budget", strings.Repeat("12:34:56 ", 8192) + "ratio 1:2", strings.Repeat("12:34:56 ", 8192) + "ratio [scrubbed]"},
		{"mac kept", "hw 00:1a:2b:3c:4d:5e", "hw 00:1a:2b:3c:4d:5e"},
		{"encoded ipv6", "ws://r/?client_ip=2001%3Adb8%3A%3A1&x=1", "ws://r/?client_ip=[scrubbed]&x=1"},
		{"encoded lower case", "client_ip=2001%3adb8%3a%3a1", "client_ip=[scrubbed]"},
		{"encoded bracket port", "u=%5B2001%3Adb8%3A%3A1%5D%3A443 x", "u=[scrubbed] x"},
		{"encoded mapped", "client_ip=%3A%3Affff%3A192.0.2.1", "client_ip=[scrubbed]"},
		{"encoded time kept", "t=12%3A34%3A56", "t=12%3A34%3A56"},
		{"encoded colon alone kept", "a%3Ab", "a%3Ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewTextHandler(&buf, nil), false))
	log = log.With("peer", "192.0.2.1:5")
	log.Info("connect to 192.0.2.2",
		"err", errors.New("dial tcp 192.0.2.3:80: timeout"),
		"addr", &net.TCPAddr{IP: net.ParseIP("2001:db8::5"), Port: 9},
		slog.Group("g", "ip", "192.0.2.4"),
		"n", 7)
	out := buf.String()
	for _, leak := range []string{"192.0.2.", "2001:db8"} {
		if strings.Contains(out, leak) {
			t.Errorf("log leaks %q: %s", leak, out)
		}
	}
	if !strings.Contains(out, "n=7") {
		t.Errorf("non-string attribute lost: %s", out)
	}

	buf.Reset()
	unsafe := slog.New(NewHandler(slog.NewTextHandler(&buf, nil), true))
	unsafe.Info("connect to 192.0.2.2")
	if !strings.Contains(buf.String(), "192.0.2.2") {
		t.Errorf("unsafe logging scrubbed anyway: %s", buf.String())
	}
}

func FuzzString(f *testing.F) {
	f.Add("1.2.3.4:5 [::1]:6 fe80::1%eth0")
	f.Add("client_ip=2001%3Adb8%3A%3A1 %5B%3A%3A1%5D%3A80")
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if String(out) != out {
			t.Errorf("scrubbing is not idempotent: %q -> %q -> %q", s, out, String(out))
		}
		if len(out) > 4096 {
			return // the check below is quadratic-ish; long inputs test the budget
		}
		for i := range len(out) {
			if n := addressPrefix(out[i:]); n > 0 {
				t.Fatalf("address %q survived: %q -> %q", out[i:i+n], s, out)
			}
		}
		for _, m := range encodedRE.FindAllString(out, -1) {
			plain := decodeEncoded.Replace(m)
			for i := range len(plain) {
				if n := addressPrefix(plain[i:]); n > 0 {
					t.Fatalf("encoded address %q survived: %q -> %q", m, s, out)
				}
			}
		}
	})
}

func TestOpenLogger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	for _, unsafe := range []bool{false, true} {
		logger, closer, err := OpenLogger(path, slog.LevelInfo, unsafe)
		if err != nil {
			t.Fatal(err)
		}
		logger.Debug("hidden", "addr", "192.0.2.1")
		logger.Info("shown", "addr", "192.0.2.1:443")
		if err := closer.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	// The second logger appended to what the first wrote.
	if len(lines) != 2 {
		t.Fatalf("log file lines %q: want one line per logger", lines)
	}
	if strings.Contains(lines[0], "192.0.2.1") || !strings.Contains(lines[0], "shown") {
		t.Errorf("scrubbed logger wrote %q", lines[0])
	}
	if !strings.Contains(lines[1], "192.0.2.1:443") {
		t.Errorf("unsafe logger wrote %q", lines[1])
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v, err %v", info.Mode().Perm(), err)
	}
	if _, _, err := OpenLogger(filepath.Join(t.TempDir(), "missing", "log"), slog.LevelInfo, false); err == nil {
		t.Error("a log in a missing directory opened without error")
	}
}
