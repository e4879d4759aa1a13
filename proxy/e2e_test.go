package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// sink is the TCP service at the end of the chain (where tor's ORPort would
// be). Each connection starts with a mode byte and a big-endian uint64 size:
// 'U' reads size bytes and answers their SHA-256; 'D' sends size bytes of the
// deterministic stream patternStream(size).
type sink struct {
	ln net.Listener
}

func startSink(t *testing.T) *sink {
	s := &sink{}
	s.ln = testenv.ServeTCP(t, s.serve)
	return s
}

func (s *sink) serve(c net.Conn) {
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	size := int64(binary.BigEndian.Uint64(hdr[1:]))
	switch hdr[0] {
	case 'U':
		h := sha256.New()
		if _, err := io.CopyN(h, c, size); err != nil {
			return
		}
		c.Write(h.Sum(nil))
	case 'D':
		io.Copy(c, patternStream(size))
	}
}

// patternStream returns size pseudo-random bytes, the same for every call.
func patternStream(size int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{'s', 'n', 'o', 'w'}), size)
}

// socks5Connect opens a SOCKS5 CONNECT (no authentication) through addr.
// The snowflake client ignores the target, so it is a never-dialled
// loopback address.
func socks5Connect(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(socksTimeout))
	// Greeting: version 5, one method, no authentication.
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReader(c)
	var rep [2]byte
	if _, err := io.ReadFull(r, rep[:]); err != nil || rep != [2]byte{5, 0} {
		c.Close()
		return nil, fmt.Errorf("socks greeting: %v %v", rep, err)
	}
	if _, err := c.Write([]byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 9}); err != nil {
		c.Close()
		return nil, err
	}
	var resp [10]byte
	if _, err := io.ReadFull(r, resp[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("socks connect: %w", err)
	}
	if resp[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("socks connect: reply %d", resp[1])
	}
	c.SetDeadline(time.Time{})
	return &bufferedConn{Conn: c, r: r}, nil
}

// socksTimeout bounds SOCKS negotiation, which includes the rendezvous.
var socksTimeout = 90 * time.Second

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// chain is client → broker → proxy → server → sink on loopback.
type chain struct {
	socks string
	proxy *testenv.Process
}

type proxyKind int

const (
	ourProxy proxyKind = iota
	debianProxy
)

// startChain starts server, broker, the chosen proxy and Debian's
// snowflake-client, in that order (upstream proxies check the relay once at
// start), and waits for the client's SOCKS port.
func startChain(t *testing.T, kind proxyKind, stunURL string) *chain {
	t.Helper()
	sk := startSink(t)
	dir := t.TempDir()

	serverPort := testenv.FreePort(t)
	server := testenv.Start(t, "server", nil, testenv.Binary(t, "./server"),
		"-listen", fmt.Sprintf("127.0.0.1:%d", serverPort), "-orport", sk.ln.Addr().String(),
		"-disable-tls", "-unsafe-logging", "-stats-interval", "0")
	server.WaitFor(t, "listening", 60*time.Second)
	relay := fmt.Sprintf("ws://127.0.0.1:%d/", serverPort)

	bridges := filepath.Join(dir, "bridges.json")
	line := fmt.Sprintf(`{"displayName":"loopback","webSocketAddress":%q,"fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}`, relay)
	if err := os.WriteFile(bridges, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	brokerPort := testenv.FreePort(t)
	broker := testenv.Start(t, "broker", nil, testenv.Binary(t, "./broker"),
		"-addr", fmt.Sprintf("127.0.0.1:%d", brokerPort), "-disable-tls", "-bridge-list-path", bridges,
		"-allowed-relay-pattern", "127.0.0.1$", "-disable-geoip", "-unsafe-logging")
	broker.WaitFor(t, "listening", 60*time.Second)
	brokerURL := fmt.Sprintf("http://127.0.0.1:%d/", brokerPort)

	common := []string{"-broker", brokerURL, "-relay", relay, "-stun", stunURL, "-keep-local-addresses",
		"-allow-non-tls-relay", "-allowed-relay-hostname-pattern", "127.0.0.1$", "-capacity", "10"}
	var proxy *testenv.Process
	switch kind {
	case ourProxy:
		proxy = testenv.Start(t, "proxy", nil, testenv.Binary(t, "./proxy"), append(common,
			"-allow-proxying-to-private-addresses", "-nat-probe-server", "", "-poll-interval", "2s",
			"-summary-interval", "0s", "-unsafe-logging", "-geoipdb", "", "-geoip6db", "",
			"-cpuprofile", os.Getenv("SNOWFLAKE_PROXY_CPUPROFILE"))...)
		proxy.WaitFor(t, "proxy started", 30*time.Second)
	case debianProxy:
		// No -summary-interval 0s: 2.5.1 then logs in a busy loop.
		proxy = testenv.Start(t, "snowflake-proxy-2.5.1", nil, testenv.LookPath(t, "snowflake-proxy"), common...)
		time.Sleep(2 * time.Second)
	}

	state := filepath.Join(dir, "client-state")
	os.Mkdir(state, 0o700)
	client := testenv.Start(t, "snowflake-client-2.5.1", []string{
		"TOR_PT_MANAGED_TRANSPORT_VER=1", "TOR_PT_CLIENT_TRANSPORTS=snowflake",
		"TOR_PT_STATE_LOCATION=" + state, "TOR_PT_EXIT_ON_STDIN_CLOSE=0",
	}, testenv.LookPath(t, "snowflake-client"),
		"-url", brokerURL, "-keep-local-addresses", "-ice", stunURL, "-log", filepath.Join(dir, "client.log"))
	cm := client.WaitFor(t, "CMETHOD snowflake socks5", 30*time.Second)
	f := strings.Fields(cm)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "client.log"))
			t.Logf("--- client log ---\n%s", b)
		}
	})
	return &chain{socks: f[len(f)-1], proxy: proxy}
}

// request opens a stream to the sink through the client's SOCKS port and
// sends the sink's header, mode and size. start is when the stream was
// open, after the rendezvous, so a transfer's time leaves that out.
func (c *chain) request(t *testing.T, mode byte, size int64) (conn net.Conn, start time.Time) {
	t.Helper()
	conn, err := socks5Connect(c.socks)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	var hdr [9]byte
	hdr[0] = mode
	binary.BigEndian.PutUint64(hdr[1:], uint64(size))
	if _, err := conn.Write(hdr[:]); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return conn, start
}

// upload sends size bytes and checks the SHA-256 the sink computed.
func (c *chain) upload(t *testing.T, size int64) time.Duration {
	t.Helper()
	conn, start := c.request(t, 'U', size)
	defer conn.Close()
	want := sha256.New()
	// A stalled chain blocks the writes once the buffers are full.
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := io.Copy(io.MultiWriter(conn, want), patternStream(size)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Minute))
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("upload: reading digest: %v", err)
	}
	if string(got) != string(want.Sum(nil)) {
		t.Fatal("upload: SHA-256 at the sink differs")
	}
	return time.Since(start)
}

// download receives size bytes and checks their SHA-256.
func (c *chain) download(t *testing.T, size int64) time.Duration {
	t.Helper()
	conn, start := c.request(t, 'D', size)
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	got := sha256.New()
	if n, err := io.CopyN(got, conn, size); err != nil {
		t.Fatalf("download: %v after %d bytes", err, n)
	}
	want := sha256.New()
	io.Copy(want, patternStream(size))
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatal("download: SHA-256 differs")
	}
	return time.Since(start)
}

// cpuSeconds returns utime+stime of a process from /proc/<pid>/stat.
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may contain spaces; fields after ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	const clockTicks = 100 // USER_HZ on Linux
	return (ut + st) / clockTicks
}

// TestDebianClientThroughOurProxy is the interoperability end-to-end test:
// Debian's snowflake-client 2.5.1 → our broker → our proxy → our server →
// TCP sink, 100 MB downstream and 10 MB upstream, SHA-256 checked.
func TestDebianClientThroughOurProxy(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	c := startChain(t, ourProxy, testenv.STUN(t).URL())
	const down, up = 100 << 20, 10 << 20
	d := c.download(t, down)
	u := c.upload(t, up)
	t.Logf("download %d MB in %v (%.1f MB/s), upload %d MB in %v (%.1f MB/s)",
		down>>20, d.Round(time.Millisecond), float64(down)/1e6/d.Seconds(),
		up>>20, u.Round(time.Millisecond), float64(up)/1e6/u.Seconds())
	c.proxy.WaitFor(t, "client connected", 5*time.Second)
}

// TestBenchmarkProxyCPU measures, in one run, the CPU time our proxy and
// Debian's snowflake-proxy 2.5.1 spend relaying the same transfers in the
// same chain (Debian client, our broker and server). It is slow and its
// figures are only meaningful without -race, so it runs only when
// SNOWFLAKE_BENCH is set:
//
//	SNOWFLAKE_BENCH=1 go test -run TestBenchmarkProxyCPU -v ./proxy/
func TestBenchmarkProxyCPU(t *testing.T) {
	if os.Getenv("SNOWFLAKE_BENCH") == "" {
		t.Skip("set SNOWFLAKE_BENCH=1 to run")
	}
	if testenv.IsolateNetwork(t) {
		return
	}
	stun := testenv.STUN(t).URL()
	size := int64(100 << 20)
	if s := os.Getenv("SNOWFLAKE_BENCH_MB"); s != "" {
		mb, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		size = int64(mb) << 20
	}
	for _, tc := range []struct {
		name string
		kind proxyKind
	}{{"ours", ourProxy}, {"debian-2.5.1", debianProxy}} {
		t.Run(tc.name, func(t *testing.T) {
			c := startChain(t, tc.kind, stun)
			// Warm up: the first connection includes the rendezvous.
			c.download(t, 1<<20)
			pid := c.proxy.Cmd.Process.Pid
			cpu0 := cpuSeconds(t, pid)
			d := c.download(t, size)
			cpu1 := cpuSeconds(t, pid)
			u := c.upload(t, size)
			cpu2 := cpuSeconds(t, pid)
			per100 := func(cpu float64) float64 { return cpu * float64(100<<20) / float64(size) }
			t.Logf("%s proxy: download %.1f MB/s, %.2f CPU-s per 100 MB; upload %.1f MB/s, %.2f CPU-s per 100 MB",
				tc.name, float64(size)/1e6/d.Seconds(), per100(cpu1-cpu0),
				float64(size)/1e6/u.Seconds(), per100(cpu2-cpu1))
		})
	}
}
