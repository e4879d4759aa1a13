package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/snowflake-go/snowflake/common/turbotunnel"
	"github.com/snowflake-go/snowflake/common/websocketconn"
	"github.com/snowflake-go/snowflake/internal/testenv"
	"github.com/snowflake-go/snowflake/server/extorport"
)

// fakeTor stands in for tor's Extended ORPort: it runs the real SAFE_COOKIE
// handshake, records the metadata of each connection, then echoes the OR
// bytes back.
type fakeTor struct {
	ln         net.Listener
	cookiePath string
	cookie     []byte

	mu       sync.Mutex
	metadata []extorport.Metadata
	received bytes.Buffer // what the first connection carried, up to 16 MB
	accepted atomic.Int32
}

func startFakeTor(t *testing.T) *fakeTor {
	t.Helper()
	ft := &fakeTor{cookie: make([]byte, 32)}
	rand.Read(ft.cookie)
	ft.cookiePath = filepath.Join(t.TempDir(), "extended_orport_auth_cookie")
	if err := os.WriteFile(ft.cookiePath, extorport.FormatCookie(ft.cookie), 0o600); err != nil {
		t.Fatal(err)
	}
	ft.ln = testenv.ServeTCP(t, func(c net.Conn) {
		ft.accepted.Add(1)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		ft.mu.Lock()
		cookie := ft.cookie
		ft.mu.Unlock()
		md, err := extorport.Accept(c, cookie)
		if err != nil {
			t.Errorf("fake tor: ExtORPort handshake: %v", err)
			return
		}
		c.SetDeadline(time.Time{})
		ft.mu.Lock()
		first := len(ft.metadata) == 0
		ft.metadata = append(ft.metadata, *md)
		ft.mu.Unlock()
		if !first {
			io.Copy(c, c)
			return
		}
		buf := make([]byte, 32*1024)
		for {
			n, err := c.Read(buf)
			ft.mu.Lock()
			if ft.received.Len() < 16<<20 {
				ft.received.Write(buf[:n])
			}
			ft.mu.Unlock()
			if _, werr := c.Write(buf[:n]); werr != nil || err != nil {
				return
			}
		}
	})
	return ft
}

// newCookie makes the fake tor use a fresh cookie and write it to its
// cookie file, as tor does when it restarts.
func (ft *fakeTor) newCookie(t *testing.T) {
	t.Helper()
	cookie := make([]byte, 32)
	rand.Read(cookie)
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if err := os.WriteFile(ft.cookiePath, extorport.FormatCookie(cookie), 0o600); err != nil {
		t.Fatal(err)
	}
	ft.cookie = cookie
}

// startManagedServer runs the real snowflake-server binary as tor would,
// through the TOR_PT_* environment, and returns its WebSocket URL.
func startManagedServer(t *testing.T, ft *fakeTor, options string) (*testenv.Process, string) {
	t.Helper()
	bin := testenv.Binary(t, "./server")
	// Managed mode needs a fixed port (tor's ServerTransportListenAddr), so
	// another process may take it between FreePort and bind: retry then.
	for attempt := 1; ; attempt++ {
		port := testenv.FreePort(t)
		env := []string{
			"TOR_PT_MANAGED_TRANSPORT_VER=1",
			"TOR_PT_SERVER_TRANSPORTS=snowflake",
			fmt.Sprintf("TOR_PT_SERVER_BINDADDR=snowflake-127.0.0.1:%d", port),
			// Never dialled: the Extended ORPort takes precedence.
			"TOR_PT_ORPORT=127.0.0.1:9",
			"TOR_PT_EXTENDED_SERVER_PORT=" + ft.ln.Addr().String(),
			"TOR_PT_AUTH_COOKIE_FILE=" + ft.cookiePath,
			"TOR_PT_STATE_LOCATION=" + t.TempDir(),
			"TOR_PT_EXIT_ON_STDIN_CLOSE=0",
			"TOR_PT_SERVER_TRANSPORT_OPTIONS=" + options,
		}
		p := testenv.Start(t, "snowflake-server", env, bin, "-disable-tls", "-unsafe-logging")
		p.WaitFor(t, "SMETHODS DONE", 60*time.Second)
		out := p.Output()
		if strings.Contains(out, "address already in use") && attempt < 5 {
			p.Stop()
			continue
		}
		want := fmt.Sprintf("SMETHOD snowflake 127.0.0.1:%d", port)
		if !strings.Contains(out, want) {
			t.Fatalf("no %q in the server's output:\n%s", want, out)
		}
		return p, fmt.Sprintf("ws://127.0.0.1:%d/", port)
	}
}

// wsDialer dials the server's WebSocket at url; the test can cut the
// current one.
func wsDialer(url string) *testenv.CuttableDialer {
	return testenv.NewCuttableDialer(func(ctx context.Context) (net.Conn, error) {
		ws, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			return nil, err
		}
		return websocketconn.New(ws), nil
	})
}

// openStream dials a turbotunnel session over d and opens one stream on
// it; the test's cleanup closes both.
func openStream(t *testing.T, d *testenv.CuttableDialer) net.Conn {
	t.Helper()
	sess, err := turbotunnel.DialSession(turbotunnel.NewRedialPacketConn(turbotunnel.NewClientID(), d.Dial, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// transfer writes size random bytes to st while reading the echo, checks
// SHA-256 of both, and calls mid (if set) once half is written. Transfers of
// up to 16 MB are also kept whole, to say where they differ.
func transfer(t *testing.T, st net.Conn, size int, mid func()) time.Duration {
	t.Helper()
	return transferKeep(t, st, size, mid, nil, nil)
}

// transferKeep is transfer; on a mismatch, upstream (if set) returns what
// the ORPort received, to tell which direction was corrupted.
func transferKeep(t *testing.T, st net.Conn, size int, mid func(), _ *[]byte, upstream func() []byte) time.Duration {
	t.Helper()
	start := time.Now()
	keep := size <= 16<<20
	var sentAll, recvAll bytes.Buffer
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 64*1024)
		for written := 0; written < size; {
			n := min(len(buf), size-written)
			rand.Read(buf[:n])
			sent.Write(buf[:n])
			if keep {
				sentAll.Write(buf[:n])
			}
			if _, err := st.Write(buf[:n]); err != nil {
				errc <- err
				return
			}
			if mid != nil && written < size/2 && written+n >= size/2 {
				mid()
			}
			written += n
		}
		errc <- nil
	}()
	recv := sha256.New()
	var w io.Writer = recv
	if keep {
		w = io.MultiWriter(recv, &recvAll)
	}
	st.SetReadDeadline(time.Now().Add(5 * time.Minute))
	if n, err := io.CopyN(w, st, int64(size)); err != nil {
		t.Fatalf("read echo: %v after %d bytes", err, n)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if string(sent.Sum(nil)) != string(recv.Sum(nil)) {
		if keep {
			got, want := recvAll.Bytes(), sentAll.Bytes()
			n := min(len(got), len(want))
			i := 0
			for i < n && got[i] == want[i] {
				i++
			}
			j := i
			for j < n && got[j] != want[j] {
				j++
			}
			k := bytes.Index(want, got[i:min(i+16, len(got))])
			t.Logf("first difference at offset %d, differing run %d bytes; got %x want %x; got[%d:] found in sent at %d",
				i, j-i, got[i:min(i+24, len(got))], want[i:min(i+24, len(want))], i, k)
			if upstream != nil {
				up := upstream()
				u := 0
				for u < len(up) && u < len(want) && up[u] == want[u] {
					u++
				}
				t.Logf("the ORPort received %d bytes, identical to what was sent for the first %d", len(up), u)
			}
		}
		t.Fatal("SHA-256 of echoed bytes differs from what was sent")
	}
	return time.Since(start)
}

// TestEndToEnd runs snowflake-server as a managed transport in front of an
// ExtORPort, connects like a proxy would, and moves 50 MB each way through
// token + ClientID + encapsulated KCP + smux.
func TestEndToEnd(t *testing.T) {
	ft := startFakeTor(t)
	_, url := startManagedServer(t, ft, "snowflake:num-turbotunnel=2")
	d := wsDialer(url + "?client_ip=192.0.2.7")
	st := openStream(t, d)
	const size = 50 << 20
	elapsed := transfer(t, st, size, nil)
	t.Logf("50 MB each way in %v (%.1f MB/s each way)", elapsed.Round(time.Millisecond), float64(size)/1e6/elapsed.Seconds())

	ft.mu.Lock()
	defer ft.mu.Unlock()
	if len(ft.metadata) != 1 {
		t.Fatalf("ExtORPort saw %d connections, want 1", len(ft.metadata))
	}
	if md := ft.metadata[0]; md.UserAddr != "192.0.2.7:1" || md.Transport != "snowflake" {
		t.Fatalf("ExtORPort metadata = %+v, want USERADDR 192.0.2.7:1 TRANSPORT snowflake", md)
	}
}

// TestSessionSurvival cuts the WebSocket in the middle of a transfer; the
// client reconnects with the same ClientID over a new WebSocket and the same
// smux stream carries on with no byte lost, through the same tor connection.
func TestSessionSurvival(t *testing.T) {
	ft := startFakeTor(t)
	_, url := startManagedServer(t, ft, "")
	d := wsDialer(url + "?client_ip=2001:db8::9")
	st := openStream(t, d)
	var sentAll []byte
	transferKeep(t, st, 8<<20, d.Cut, &sentAll, func() []byte {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		return bytes.Clone(ft.received.Bytes())
	})
	if n := d.Dials(); n < 2 {
		t.Fatalf("WebSocket dialled %d times, want a reconnection", n)
	}
	if n := ft.accepted.Load(); n != 1 {
		t.Fatalf("ExtORPort saw %d connections, want the one stream to survive", n)
	}
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if md := ft.metadata[0]; md.UserAddr != "[2001:db8::9]:1" || md.Transport != "snowflake" {
		t.Fatalf("metadata = %+v", md)
	}
}

// TestStandalone runs the server without tor: -listen and -orport, each
// stream connected to a plain ORPort.
func TestStandalone(t *testing.T) {
	orln := testenv.ServeTCP(t, func(c net.Conn) { io.Copy(c, c) })
	p, addr := startStandalone(t, nil, orln.Addr().String(), "-stats-interval", "200ms", "-metrics-addr", "127.0.0.1:0")
	d := wsDialer("ws://" + addr + "/any/path")
	st := openStream(t, d)
	transfer(t, st, 1<<20, nil)
	st.Close()
	// The periodic stats line and the metrics report the stream.
	p.WaitFor(t, "streams_total=1", 10*time.Second)
	url := metricsURL(t, p)
	wants := []string{
		"snowflake_server_streams_total 1",
		"snowflake_server_sessions_total 1",
		"snowflake_server_websocket_connections_total 1",
		`snowflake_server_bytes_total{direction="up"} 1.048576e+06`,
		`snowflake_server_errors_total{reason="preamble"} 0`,
	}
	// The byte counter moves after the server's Write to the ORPort
	// returns, which may be after the echo has reached the client: poll
	// until every value is there.
	var missing []string
	var body []byte
	waitUntil(t, 10*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				missing = append(missing, want)
			}
		}
		return len(missing) == 0
	}, func() string { return fmt.Sprintf("metrics lack %q:\n%s", missing, body) })
}

// startStandalone runs the server binary in standalone mode on a port of
// its choosing (port 0: no race for a free port) and returns its address.
func startStandalone(t testing.TB, env []string, orport string, args ...string) (*testenv.Process, string) {
	t.Helper()
	args = append([]string{"-disable-tls", "-unsafe-logging", "-listen", "127.0.0.1:0", "-orport", orport}, args...)
	p := testenv.Start(t, "snowflake-server", env, testenv.Binary(t, "./server"), args...)
	line := p.WaitFor(t, "listening", 60*time.Second)
	m := regexp.MustCompile(`addr=(127\.0\.0\.1:[0-9]+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	return p, m[1]
}

// TestLogScrubbed: without -unsafe-logging no address reaches the log.
func TestLogScrubbed(t *testing.T) {
	p := testenv.Start(t, "snowflake-server", nil, testenv.Binary(t, "./server"),
		"-disable-tls", "-listen", "127.0.0.1:0", "-orport", "127.0.0.1:9")
	line := p.WaitFor(t, "listening", 60*time.Second)
	if strings.Contains(line, "127.0.0.1") || !strings.Contains(line, "[scrubbed]") {
		t.Fatalf("listening line not scrubbed: %q", line)
	}
}

// TestTor: Debian's tor, as a bridge with "ServerTransportPlugin snowflake
// exec <server>", starts our server and registers the transport.
func TestTor(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	tor := testenv.LookPath(t, "tor")
	bin := testenv.Binary(t, "./server")
	dir := t.TempDir()
	ptPort := testenv.FreePort(t)
	torrc := filepath.Join(dir, "torrc")
	conf := strings.Join([]string{
		"DataDirectory " + filepath.Join(dir, "data"),
		"BridgeRelay 1",
		"ORPort 127.0.0.1:auto",
		"ExtORPort auto",
		"SocksPort 0",
		"PublishServerDescriptor 0",
		"AssumeReachable 1",
		"ShutdownWaitLength 0",
		"Log notice stdout",
		"ServerTransportPlugin snowflake exec " + bin + " -disable-tls -log " + filepath.Join(dir, "server.log"),
		fmt.Sprintf("ServerTransportListenAddr snowflake 127.0.0.1:%d", ptPort),
		"ServerTransportOptions snowflake num-turbotunnel=2",
	}, "\n") + "\n"
	if err := os.WriteFile(torrc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, "tor", nil, tor, "-f", torrc, "--ignore-missing-torrc")
	line := p.WaitFor(t, "Registered server transport 'snowflake'", 90*time.Second)
	if !strings.Contains(line, fmt.Sprintf("127.0.0.1:%d", ptPort)) {
		t.Errorf("registration line %q does not name port %d", line, ptPort)
	}
	// The transport answers WebSockets: a proxy-style reachability check.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/", ptPort), nil)
	if err != nil {
		t.Fatalf("WebSocket to the tor-managed server: %v", err)
	}
	ws.CloseNow()
}

// TestManagedErrors: configurations tor may hand over that cannot work are
// reported to tor (SMETHOD-ERROR) and make the server exit, not hang.
func TestManagedErrors(t *testing.T) {
	bin := testenv.Binary(t, "./server")
	base := []string{
		"TOR_PT_MANAGED_TRANSPORT_VER=1",
		"TOR_PT_ORPORT=127.0.0.1:9",
		"TOR_PT_STATE_LOCATION=" + t.TempDir(),
	}
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"port 0", []string{"TOR_PT_SERVER_TRANSPORTS=snowflake", "TOR_PT_SERVER_BINDADDR=snowflake-127.0.0.1:0"},
			[]string{"-disable-tls"}, "SMETHOD-ERROR snowflake"},
		{"bad num-turbotunnel", []string{"TOR_PT_SERVER_TRANSPORTS=snowflake", "TOR_PT_SERVER_BINDADDR=snowflake-127.0.0.1:1",
			"TOR_PT_SERVER_TRANSPORT_OPTIONS=snowflake:num-turbotunnel=zero"}, []string{"-disable-tls"}, "num-turbotunnel must be"},
		{"bad orport-srcaddr", []string{"TOR_PT_SERVER_TRANSPORTS=snowflake", "TOR_PT_SERVER_BINDADDR=snowflake-127.0.0.1:1",
			"TOR_PT_SERVER_TRANSPORT_OPTIONS=snowflake:orport-srcaddr=nonsense"}, []string{"-disable-tls"}, "orport-srcaddr"},
		{"no tls config", []string{"TOR_PT_SERVER_TRANSPORTS=snowflake", "TOR_PT_SERVER_BINDADDR=snowflake-127.0.0.1:1"},
			nil, "-acme-hostnames is required"},
		{"missing environment", []string{"TOR_PT_SERVER_TRANSPORTS=snowflake"}, []string{"-disable-tls"}, "ENV-ERROR"},
		{"bad cookie file", []string{"TOR_PT_SERVER_TRANSPORTS=snowflake", "TOR_PT_SERVER_BINDADDR=snowflake-127.0.0.1:1",
			"TOR_PT_EXTENDED_SERVER_PORT=127.0.0.1:9", "TOR_PT_AUTH_COOKIE_FILE=/nonexistent/cookie"}, []string{"-disable-tls"},
			"LOG SEVERITY=error MESSAGE=\"snowflake-server: extorport: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testenv.Start(t, "snowflake-server", append(append([]string{}, base...), tt.env...), bin, tt.args...)
			select {
			case <-p.Exited():
			case <-time.After(30 * time.Second):
				t.Fatalf("server still running:\n%s", p.Output())
			}
			if !strings.Contains(p.Output(), tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, p.Output())
			}
			if p.Cmd.ProcessState.Success() {
				t.Fatalf("server exited with success:\n%s", p.Output())
			}
		})
	}
}

// TestExitOnStdinClose: with TOR_PT_EXIT_ON_STDIN_CLOSE=1 the server exits
// when its standard input ends (here at once: it is /dev/null).
func TestExitOnStdinClose(t *testing.T) {
	ft := startFakeTor(t)
	env := []string{
		"TOR_PT_MANAGED_TRANSPORT_VER=1",
		"TOR_PT_SERVER_TRANSPORTS=snowflake",
		fmt.Sprintf("TOR_PT_SERVER_BINDADDR=snowflake-127.0.0.1:%d", testenv.FreePort(t)),
		"TOR_PT_ORPORT=127.0.0.1:9",
		"TOR_PT_EXTENDED_SERVER_PORT=" + ft.ln.Addr().String(),
		"TOR_PT_AUTH_COOKIE_FILE=" + ft.cookiePath,
		"TOR_PT_STATE_LOCATION=" + t.TempDir(),
		"TOR_PT_EXIT_ON_STDIN_CLOSE=1",
	}
	p := testenv.Start(t, "snowflake-server", env, testenv.Binary(t, "./server"), "-disable-tls")
	select {
	case <-p.Exited():
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not exit after stdin closed:\n%s", p.Output())
	}
}

// TestSmethodArgs: like upstream's, the server's SMETHOD line tells tor
// whether it serves TLS (and for which host names), which tor publishes in
// the bridge's extra-info descriptor.
func TestSmethodArgs(t *testing.T) {
	p, url := startManagedServer(t, startFakeTor(t), "")
	want := "SMETHOD snowflake " + strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/") + " ARGS:tls=no\n"
	if out := p.Output(); !strings.Contains(out, want) {
		t.Fatalf("no %q in the server's output:\n%s", want, out)
	}
}

// TestCookieRenewed: the server authenticates with the cookie tor has now,
// not the one it found at start. tor writes a fresh cookie whenever it
// starts, which a server run by systemd in front of tor outlives, and it
// may write it after starting its transports (tor bug 15240), leaving a
// stale file for them to read.
func TestCookieRenewed(t *testing.T) {
	ft := startFakeTor(t)
	_, url := startManagedServer(t, ft, "")
	transfer(t, openStream(t, wsDialer(url)), 10000, nil)
	ft.newCookie(t)
	transfer(t, openStream(t, wsDialer(url)), 10000, nil)
}
