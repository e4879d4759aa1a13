package main

// End-to-end harness: real processes (our server, broker, proxy and client,
// or Debian's 2.5.1 proxy and client) on loopback, moving bytes from a TCP
// "ORPort" through the whole Snowflake chain to a SOCKS reader that checks
// their SHA-256.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/snowflake-go/snowflake/internal/stunserver"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

const bridgeFingerprint = "2B280B23E1107BB62ABFC40DDCC8824814F80A72"

// source is the stand-in for tor's ORPort. A connection's first byte picks
// the service: 'D' sends size bytes of a seeded pseudo-random stream, 'E'
// echoes everything back (for round-trip times).
type source struct {
	ln   net.Listener
	size int64
	seed uint64
	want string // hex SHA-256 of the stream
}

func newStream(seed uint64) io.Reader {
	return rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1, 2, 3})
}

func startSource(t *testing.T, size int64) *source {
	t.Helper()
	s := &source{size: size, seed: 7}
	h := sha256.New()
	io.CopyN(h, newStream(s.seed), size)
	s.want = hex.EncodeToString(h.Sum(nil))
	s.ln = testenv.ServeTCP(t, func(c net.Conn) {
		var cmd [1]byte
		if _, err := io.ReadFull(c, cmd[:]); err != nil {
			return
		}
		if cmd[0] == 'E' {
			io.Copy(c, c)
			return
		}
		io.CopyN(c, newStream(s.seed), size)
		// Keep the connection open until the reader hangs up, so the
		// tail is not cut by an early close.
		io.Copy(io.Discard, c)
	})
	return s
}

func (s *source) addr() string { return s.ln.Addr().String() }

// chain holds the shared part of a test network: STUN, bridge server and
// broker. The server, broker and proxies are built without the race
// detector (their own tests race-check them); the client under test keeps
// it when the test has it.
type chain struct {
	t         *testing.T
	dir       string
	stun      *stunserver.Server
	src       *source
	server    *testenv.Process
	broker    *testenv.Process
	relay     string // ws://127.0.0.1:S/
	brokerURL string
}

func startChain(t *testing.T, size int64, brokerArgs ...string) *chain {
	t.Helper()
	c := &chain{t: t, dir: t.TempDir()}
	c.stun = testenv.STUN(t)
	c.src = startSource(t, size)

	sport := testenv.FreePort(t)
	c.relay = fmt.Sprintf("ws://127.0.0.1:%d/", sport)
	c.server = testenv.Start(t, "server", nil, testenv.BinaryNoRace(t, "./server"),
		"-listen", fmt.Sprintf("127.0.0.1:%d", sport), "-orport", c.src.addr(), "-disable-tls")
	c.server.WaitFor(t, "listening", 60*time.Second)

	bridges := filepath.Join(c.dir, "bridges.json")
	line := fmt.Sprintf(`{"displayName":"loopback","webSocketAddress":"%s","fingerprint":"%s"}`+"\n", c.relay, bridgeFingerprint)
	if err := os.WriteFile(bridges, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	// Proxies follow the broker's NextPoll advice (20 s by default) after
	// a poll that found no client; keep them polling every second so a
	// client that loses its proxy finds another at once.
	intervals := filepath.Join(c.dir, "poll-intervals.json")
	if err := os.WriteFile(intervals, []byte(`{"unrestricted_poll_interval":1000,"restricted_poll_interval":1000}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bport := testenv.FreePort(t)
	c.brokerURL = fmt.Sprintf("http://127.0.0.1:%d/", bport)
	args := append([]string{"-addr", fmt.Sprintf("127.0.0.1:%d", bport), "-disable-tls",
		"-bridge-list-path", bridges, "-allowed-relay-pattern", "127.0.0.1$", "-disable-geoip",
		"-poll-interval-filepath", intervals}, brokerArgs...)
	c.broker = testenv.Start(t, "broker", nil, testenv.BinaryNoRace(t, "./broker"), args...)
	c.broker.WaitFor(t, "listening", 60*time.Second)
	return c
}

// startProxy starts one of our proxies.
func (c *chain) startProxy(name string) *testenv.Process {
	c.t.Helper()
	return testenv.Start(c.t, name, nil, testenv.BinaryNoRace(c.t, "./proxy"),
		"-broker", c.brokerURL, "-relay", c.relay, "-stun", c.stun.URL(),
		"-keep-local-addresses", "-allow-non-tls-relay", "-allow-proxying-to-private-addresses",
		"-allowed-relay-hostname-pattern", "127.0.0.1$", "-nat-probe-server", "",
		"-poll-interval", "2s", "-summary-interval", "0s", "-capacity", "4")
}

// startDebianProxy starts Debian's snowflake-proxy 2.5.1 (only inside
// testenv.IsolateNetwork).
func (c *chain) startDebianProxy(name string) *testenv.Process {
	c.t.Helper()
	bin := testenv.LookPath(c.t, "snowflake-proxy")
	return testenv.Start(c.t, name, nil, bin,
		"-broker", c.brokerURL, "-relay", c.relay, "-stun", c.stun.URL(),
		"-keep-local-addresses", "-allow-non-tls-relay",
		"-allowed-relay-hostname-pattern", "127.0.0.1$", "-capacity", "4")
}

// startClient starts a client binary as a managed PT and returns it with
// its SOCKS address.
func (c *chain) startClient(name, bin string, args ...string) (*testenv.Process, string) {
	c.t.Helper()
	return c.startClientEnv(name, nil, bin, args...)
}

// startClientEnv is startClient with extra environment (TOR_PT_PROXY).
func (c *chain) startClientEnv(name string, extra []string, bin string, args ...string) (*testenv.Process, string) {
	c.t.Helper()
	state := filepath.Join(c.dir, name+"-state")
	env := append([]string{"TOR_PT_MANAGED_TRANSPORT_VER=1", "TOR_PT_CLIENT_TRANSPORTS=snowflake",
		"TOR_PT_STATE_LOCATION=" + state}, extra...)
	p := testenv.Start(c.t, name, env, bin, args...)
	line := p.WaitFor(c.t, "CMETHOD snowflake socks5", 30*time.Second)
	f := strings.Fields(line)
	return p, f[len(f)-1]
}

// ourClientArgs are the loopback flags of a client of either kind.
func (c *chain) clientArgs(name string) []string {
	return []string{"-url", c.brokerURL, "-ice", c.stun.URL(), "-keep-local-addresses",
		"-log", filepath.Join(c.dir, name+".log")}
}

// socksDial connects through a client's SOCKS port with bridge-line args.
func socksDial(t *testing.T, socksAddr, bridgeArgs string) net.Conn {
	t.Helper()
	auth := &proxy.Auth{User: bridgeArgs, Password: "\x00"}
	if len(bridgeArgs) > 255 {
		auth = &proxy.Auth{User: bridgeArgs[:255], Password: bridgeArgs[255:]}
	}
	if bridgeArgs == "" {
		auth = nil
	}
	d, err := proxy.SOCKS5("tcp", socksAddr, auth, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	// The CONNECT target is ignored by Snowflake clients; tor sends the
	// bridge line's address, a TEST-NET placeholder here. The client
	// answers once it has rendezvoused, or never if no proxy comes.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", "192.0.2.3:80")
	if err != nil {
		t.Fatalf("SOCKS connect via %s: %v", socksAddr, err)
	}
	return conn
}

// download reads the whole stream from conn, checking its hash, and
// returns how long the transfer (after the first byte) took.
func (c *chain) download(conn net.Conn, progress func(n int64)) time.Duration {
	c.t.Helper()
	defer conn.Close()
	if _, err := conn.Write([]byte{'D'}); err != nil {
		c.t.Fatalf("request: %v", err)
	}
	h := sha256.New()
	br := bufio.NewReaderSize(conn, 64<<10)
	// The first byte waits for the rendezvous; bound that wait too.
	conn.SetReadDeadline(time.Now().Add(90 * time.Second))
	if _, err := br.Peek(1); err != nil {
		c.t.Fatalf("no data: %v", err)
	}
	start := time.Now()
	var n int64
	buf := make([]byte, 64<<10)
	conn.SetReadDeadline(time.Now().Add(10 * time.Minute))
	for n < c.src.size {
		k, err := br.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if progress != nil && k > 0 {
			progress(n)
		}
		if err != nil {
			c.t.Fatalf("after %d of %d bytes: %v", n, c.src.size, err)
		}
	}
	d := time.Since(start)
	if got := hex.EncodeToString(h.Sum(nil)); got != c.src.want {
		c.t.Fatalf("SHA-256 mismatch: got %s, want %s", got, c.src.want)
	}
	return d
}

// cpuSeconds returns the user+system CPU time a live process used.
func cpuSeconds(t *testing.T, p *testenv.Process) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		t.Logf("cpu of %s: %v", p.Name, err)
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// waitProxies waits until the broker holds polls from at least n proxies,
// so that a client's first rendezvous finds one.
func (c *chain) waitProxies(n int) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(c.brokerURL + "debug")
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			last = string(b)
			var k int
			if _, err := fmt.Sscanf(last, "current snowflakes available: %d", &k); err == nil && k >= n {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("broker never had %d proxies waiting; /debug:\n%s", n, last)
}
