package opscheck

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/testenv"
	"github.com/snowflake-go/snowflake/server/extorport"
)

// unitReady is what each binary prints once it serves.
var unitReady = map[string]string{
	"snowflake-server": "listening",
	"snowflake-broker": "listening",
	"snowflake-proxy":  "metrics listening",
}

// TestSystemdUnitsStart runs each unit's ExecStart, with the unit's
// environment, as systemd would (but without systemd, which does not run in
// the test container): the command line and the TOR_PT_* set-up must be
// complete enough for the binary to come up. Paths under /var/lib and /etc
// are moved into a temporary directory. The units name public ports and
// default public services, so this runs in an isolated network namespace,
// where nothing can leave loopback.
func TestSystemdUnitsStart(t *testing.T) {
	if !testenv.InIsolatedNetwork() {
		for _, r := range roles {
			if _, ok := unitReady[r.name]; ok && r.present(t) {
				testenv.Binary(t, r.pkg)
			}
		}
	}
	if testenv.IsolateNetwork(t) {
		return
	}
	root := testenv.ModuleRoot(t)
	units, _ := filepath.Glob(filepath.Join(root, "systemd/*.service"))
	if len(units) == 0 {
		t.Fatal("no units")
	}
	for _, path := range units {
		t.Run(filepath.Base(path), func(t *testing.T) {
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			u := parseUnit(string(text))
			dir := t.TempDir()
			relocate := strings.NewReplacer("/var/lib/", dir+"/var/lib/", "/etc/", dir+"/etc/", "/run/", dir+"/run/")
			vars := map[string]string{}
			var env []string
			for _, e := range u["Service.Environment"] {
				k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
				v = relocate.Replace(v)
				vars[k] = v
				env = append(env, k+"="+v)
			}
			expanded, err := ExpandEnv(u.last("Service.ExecStart"), vars)
			if err != nil {
				t.Fatal(err)
			}
			words, err := SplitCommand(expanded)
			if err != nil || len(words) == 0 {
				t.Fatalf("ExecStart: %v", err)
			}
			bin := binaryName(words[0])
			r, _ := roleByName(bin)
			if !r.present(t) {
				t.Skipf("%s is not in the tree yet", bin)
			}
			// Broker and server both bind ports 443 and 80; the server runs
			// first, alone, then the broker and proxy (slow to start: they
			// load the geoip databases) run side by side.
			if bin != "snowflake-server" {
				t.Parallel()
			}
			ready, ok := unitReady[bin]
			if !ok {
				t.Fatalf("no readiness line known for %s", bin)
			}
			for i := range words[1:] {
				words[i+1] = relocate.Replace(words[i+1])
			}
			// StateDirectory= and ConfigurationDirectory= are created by
			// systemd; create them here.
			for _, d := range append(u["Service.StateDirectory"], u["Service.ConfigurationDirectory"]...) {
				os.MkdirAll(filepath.Join(dir, "var/lib", d), 0o700)
				os.MkdirAll(filepath.Join(dir, "etc", d), 0o700)
			}
			if strings.Contains(expanded, "bridge-list.json") {
				list := repoFile(t, "doc/examples/bridge-list.json")
				if err := os.WriteFile(filepath.Join(dir, "etc/snowflake-broker/bridge-list.json"), []byte(list), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if cookie := vars["TOR_PT_AUTH_COOKIE_FILE"]; cookie != "" {
				// Stand in for tor: its cookie and Extended ORPort.
				os.MkdirAll(filepath.Dir(cookie), 0o700)
				if err := os.WriteFile(cookie, extorport.FormatCookie(bytes.Repeat([]byte{7}, 32)), 0o600); err != nil {
					t.Fatal(err)
				}
				ln, err := net.Listen("tcp", vars["TOR_PT_EXTENDED_SERVER_PORT"])
				if err != nil {
					t.Fatalf("stand-in Extended ORPort: %v", err)
				}
				t.Cleanup(func() { ln.Close() })
			}
			args := words[1:]
			if bin == "snowflake-broker" || bin == "snowflake-proxy" {
				// One-line geoip databases: parsing tor's full ones takes
				// about 15 s under the race detector. Later flags win.
				v4, v6 := filepath.Join(dir, "geoip"), filepath.Join(dir, "geoip6")
				os.WriteFile(v4, []byte("16777216,16777471,AU\n"), 0o600)
				os.WriteFile(v6, []byte("2001:db8::,2001:db8::ffff,ZZ\n"), 0o600)
				args = append(args, "-geoipdb", v4, "-geoip6db", v6)
			}
			p := testenv.Start(t, bin, env, testenv.Binary(t, r.pkg), args...)
			p.WaitFor(t, ready, time.Minute)
			if bin == "snowflake-server" {
				// A managed transport reports its listener to tor.
				p.WaitFor(t, "SMETHOD snowflake", 10*time.Second)
				p.WaitFor(t, "SMETHODS DONE", 10*time.Second)
			}
			// The metrics endpoint the unit configures answers.
			for i, w := range words {
				if (w == "-metrics-addr" || w == "-metrics-port") && i+1 < len(words) {
					addr := words[i+1]
					path := "/metrics"
					if w == "-metrics-port" {
						addr, path = "127.0.0.1:"+addr, "/internal/metrics"
					}
					// The metrics listener may open just after the
					// readiness line.
					url := fmt.Sprintf("http://%s%s", addr, path)
					deadline := time.Now().Add(10 * time.Second)
					for !listening(addr) && time.Now().Before(deadline) {
						time.Sleep(100 * time.Millisecond)
					}
					if body := get(t, url); !strings.Contains(body, "snowflake_") {
						t.Errorf("metrics at %s:\n%s", url, body)
					}
				}
			}
		})
	}
}

// listening reports whether a TCP connection to addr succeeds.
func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
