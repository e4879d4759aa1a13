package chain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseMetrics(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		metric  string
		want    float64
		wantErr bool
	}{
		{"plain", "up 1\n", "up", 1, false},
		{"labels summed", "# HELP x y\n# TYPE x gauge\nx{a=\"1\"} 2\nx{a=\"2\"} 3.5\n", "x", 5.5, false},
		{"label with space and brace", "x{a=\"b c}\"} 4\n", "x", 4, false},
		{"timestamp ignored", "x 7 1700000000000\n", "x", 7, false},
		{"prefix is not a match", "x_total 9\nx 1\n", "x", 1, false},
		{"absent", "y 1\n", "x", 0, false},
		{"no value", "x{a=\"1\"}\n", "", 0, true},
		{"bad value", "x abc\n", "", 0, true},
		{"scientific", "x 1e3\n", "x", 1000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMetrics(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && m.Sum(tt.metric) != tt.want {
				t.Fatalf("Sum(%q) = %v, want %v", tt.metric, m.Sum(tt.metric), tt.want)
			}
		})
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add("x{a=\"1\"} 2\n# c\ny 3 4\n")
	f.Add("}{ 1\n")
	f.Add("x{\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMetrics(strings.NewReader(s))
		if err == nil {
			m.Sum("x")
		}
	})
}

// TestPatternRanges checks that any split of the stream into ranges gives
// the same bytes as one pass, which resumed downloads rely on.
func TestPatternRanges(t *testing.T) {
	p := Pattern{Seed: 3}
	const n = 3*blockSize + 123
	var whole bytes.Buffer
	if err := p.WriteRange(context.Background(), &whole, 0, n); err != nil {
		t.Fatal(err)
	}
	if whole.Len() != n {
		t.Fatalf("wrote %d bytes, want %d", whole.Len(), n)
	}
	for _, cuts := range [][]uint64{{1}, {blockSize - 1, blockSize, blockSize + 1}, {100, 2*blockSize + 7}} {
		var parts bytes.Buffer
		prev := uint64(0)
		for _, c := range append(cuts, n) {
			p.WriteRange(context.Background(), &parts, prev, c)
			prev = c
		}
		if !bytes.Equal(parts.Bytes(), whole.Bytes()) {
			t.Fatalf("cuts %v give different bytes", cuts)
		}
	}
	if got, want := p.SHA256(n), sha256.Sum256(whole.Bytes()); got != want {
		t.Fatal("SHA256 disagrees with the bytes")
	}
	if (Pattern{Seed: 4}).SHA256(n) == p.SHA256(n) {
		t.Fatal("different seeds give the same stream")
	}
}

// TestSinkResume downloads from a real sink in two pieces and an echo.
func TestSinkResume(t *testing.T) {
	s, err := StartSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const size = 1<<20 + 17
	h := sha256.New()
	for _, r := range [][2]uint64{{0, 400000}, {400000, size}} {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		n, err := Download(ctx, c, 9, r[0], r[1], h, nil)
		c.Close()
		if err != nil || n != r[1]-r[0] {
			t.Fatalf("range %v: %d bytes, %v", r, n, err)
		}
	}
	want := Pattern{Seed: 9}.SHA256(size)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("resumed download has the wrong SHA-256")
	}
	rtts, err := RTT(ctx, sinkDialer{s.Addr()}, 20)
	if err != nil || len(rtts) != 20 {
		t.Fatalf("RTT: %v, %d samples", err, len(rtts))
	}
	if Percentile(rtts, 0) > Percentile(rtts, 100) {
		t.Fatal("percentiles not sorted")
	}
}

// TestSinkBadHeader checks that a range beyond the limit or reversed is
// refused (the sink closes without sending).
func TestSinkBadHeader(t *testing.T) {
	s, err := StartSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range [][2]uint64{{10, 5}, {0, MaxDownload + 1}} {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		n, err := Download(ctx, c, 1, r[0], r[1], sha256.New(), nil)
		c.Close()
		if err == nil || n != 0 {
			t.Fatalf("range %v: got %d bytes, err %v; want refusal", r, n, err)
		}
	}
}

type sinkDialer struct{ addr string }

func (d sinkDialer) Dial(ctx context.Context) (net.Conn, error) {
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", d.addr)
}

func TestProcLifecycle(t *testing.T) {
	dir := t.TempDir()
	p, err := StartProc(dir, "sh", nil, "/bin/sh", "-c", `echo ready; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo spun; exec sleep 60`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.WaitFor(ctx, "spun"); err != nil {
		t.Fatal(err)
	}
	u, err := p.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.PeakRSS <= 0 {
		t.Fatalf("peak RSS %d", u.PeakRSS)
	}
	p.Stop(2 * time.Second)
	p.Stop(2 * time.Second) // idempotent
	if _, err := p.WaitFor(ctx, "never printed"); err == nil {
		t.Fatal("WaitFor on an exited process succeeded")
	}
	if !p.Seen("ready") || !strings.Contains(p.Tail(10), "spun") {
		t.Fatalf("output not kept: %q", p.Tail(10))
	}
	log, err := os.ReadFile(p.LogPath)
	if err != nil || !strings.Contains(string(log), "ready") {
		t.Fatalf("log file: %v %q", err, log)
	}
	if _, err := p.Usage(); err != nil {
		t.Fatalf("usage after exit: %v", err)
	}
}

func TestProcUsageSelf(t *testing.T) {
	time.Sleep(10 * time.Millisecond) // at least one voluntary switch
	u, err := ProcUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.PeakRSS <= 0 {
		t.Fatalf("own peak RSS %d", u.PeakRSS)
	}
	if u.Switches <= 0 {
		t.Fatalf("own context switches %d", u.Switches)
	}
	// CPU time is precise to well below the 10 ms of a clock tick. Spin
	// for 3 ms of this thread's CPU time, not of wall time: on a busy
	// machine the thread may wait for a CPU for much of 3 ms of wall time.
	runtime.LockOSThread()
	start := threadCPU(t)
	for threadCPU(t)-start < 3*time.Millisecond {
	}
	runtime.UnlockOSThread()
	u2, err := ProcUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := u2.CPU - u.CPU; d < 2*time.Millisecond || d > time.Second {
		t.Fatalf("3 ms of spinning counted as %v of CPU", d)
	}
	if _, err := ProcUsage(-1); err == nil {
		t.Fatal("usage of pid -1 succeeded")
	}
}

// threadCPU returns the CPU time of the calling thread.
func threadCPU(t *testing.T) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestParseSchedstat(t *testing.T) {
	for _, tc := range []struct {
		in        string
		run, wait time.Duration
		ok        bool
	}{
		{"674737 0 1\n", 674737, 0, true},
		{"674737 52311 9\n", 674737, 52311, true},
		{"0 0 0", 0, 0, true},
		{"12 3", 0, 0, false},
		{"1 2 3 4", 0, 0, false},
		{"-5 0 1", 0, 0, false},
		{"5 -1 1", 0, 0, false},
		{"x 0 1", 0, 0, false},
		{"1 y 1", 0, 0, false},
		{"", 0, 0, false},
	} {
		run, wait, err := parseSchedstat(tc.in)
		if (err == nil) != tc.ok || run != tc.run || wait != tc.wait {
			t.Errorf("parseSchedstat(%q) = %v, %v, %v; want %v, %v, ok %v", tc.in, run, wait, err, tc.run, tc.wait, tc.ok)
		}
	}
}

func TestParseSwitches(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         int64
		ok           bool
	}{
		{"both", "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n", 15, true},
		{"spaces", "voluntary_ctxt_switches:   0\nnonvoluntary_ctxt_switches: 7", 7, true},
		{"one missing", "voluntary_ctxt_switches:\t12\n", 0, false},
		{"none", "Name:\tx\n", 0, false},
		{"not a number", "voluntary_ctxt_switches:\tx\nnonvoluntary_ctxt_switches:\t3\n", 0, false},
		{"negative", "voluntary_ctxt_switches:\t-1\nnonvoluntary_ctxt_switches:\t3\n", 0, false},
		{"empty", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSwitches(tc.status)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("parseSwitches = %d, %v; want %d, ok %v", got, err, tc.want, tc.ok)
			}
		})
	}
}

// TestEchoOnceChecksByte checks that EchoOnce fails when the byte that
// comes back is not the one sent.
func TestEchoOnceChecksByte(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := StartSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := EchoOnce(ctx, sinkDialer{s.Addr()}); err != nil {
		t.Fatalf("echo through the sink: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("y"))
		io.Copy(io.Discard, c)
	}()
	if _, err := EchoOnce(ctx, sinkDialer{ln.Addr().String()}); err == nil {
		t.Fatal("EchoOnce accepted a wrong byte")
	}
}
