package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/snowflake-go/snowflake/common/encapsulation"
	"github.com/snowflake-go/snowflake/common/turbotunnel"
	"github.com/snowflake-go/snowflake/common/websocketconn"
)

// logRecorder is a slog.Handler keeping every message with its attributes.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.mu.Lock()
	h.lines = append(h.lines, b.String())
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

func (h *logRecorder) contains(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// echoOR is a stand-in ORPort that echoes every connection and records the
// client addresses it was dialled for.
type echoOR struct {
	mu    sync.Mutex
	addrs []string
	wg    sync.WaitGroup
}

func (e *echoOR) dial(ctx context.Context, clientAddr string) (net.Conn, error) {
	e.mu.Lock()
	e.addrs = append(e.addrs, clientAddr)
	e.mu.Unlock()
	a, b := net.Pipe()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer b.Close()
		io.Copy(b, b)
	}()
	return a, nil
}

type testServer struct {
	srv  *Server
	url  string
	log  *logRecorder
	or   *echoOR
	stop func()
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	before := runtime.NumGoroutine()
	ts := &testServer{log: &logRecorder{}, or: &echoOR{}}
	cfg.Logger = slog.New(ts.log)
	if cfg.DialOR == nil {
		cfg.DialOR = ts.or.dial
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	ts.srv = srv
	ts.url = "ws://" + ln.Addr().String() + "/"
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			srv.Close()
			srv.Close() // idempotent
			ts.or.wg.Wait()
		})
	}
	t.Cleanup(func() {
		ts.stop()
		// Every goroutine of the server must be gone after Close.
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before+2 {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines before, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
	return ts
}

func (ts *testServer) dialWS(ctx context.Context, query string) (net.Conn, error) {
	ws, _, err := websocket.Dial(ctx, ts.url+query, nil)
	if err != nil {
		return nil, err
	}
	return websocketconn.New(ws), nil
}

func echo(t *testing.T, st net.Conn, size int) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := st.Write(data)
		errc <- err
	}()
	got := make([]byte, size)
	st.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(st, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("SHA-256 mismatch")
	}
}

func TestEchoSessions(t *testing.T) {
	ts := startServer(t, Config{NumTurbotunnel: 3})
	var wg sync.WaitGroup
	queries := []string{"?client_ip=192.0.2.5", "?client_ip=2001:db8::7", "", "?client_ip=bogus"}
	for _, q := range queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pconn := turbotunnel.NewRedialPacketConn(turbotunnel.NewClientID(),
				func(ctx context.Context) (net.Conn, error) { return ts.dialWS(ctx, q) }, nil)
			sess, err := turbotunnel.DialSession(pconn)
			if err != nil {
				t.Error(err)
				return
			}
			defer sess.Close()
			for range 2 {
				st, err := sess.OpenStream()
				if err != nil {
					t.Error(err)
					return
				}
				echo(t, st, 256<<10)
				st.Close()
			}
		}()
	}
	wg.Wait()
	// The byte counters move after each copy's Write returns, which may be
	// after the client has already read the echo; wait for them to settle.
	const total = 8 * 256 << 10
	waitStat(t, ts, "byte counters", func(st Stats) bool {
		return st.BytesUp >= total && st.BytesDown >= total
	})
	st := ts.srv.Stats()
	if st.SessionsTotal != 4 || st.StreamsTotal != 8 {
		t.Errorf("stats = %+v", st)
	}
	if st.BytesUp != total || st.BytesDown != total {
		t.Errorf("bytes up %d down %d", st.BytesUp, st.BytesDown)
	}
	ts.or.mu.Lock()
	got := strings.Join(ts.or.addrs, ",")
	ts.or.mu.Unlock()
	for _, want := range []string{"192.0.2.5:1", "[2001:db8::7]:1"} {
		if !strings.Contains(got, want) {
			t.Errorf("DialOR addresses %q lack %q", got, want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	tests := []struct{ query, want string }{
		{"client_ip=192.0.2.1", "192.0.2.1:1"},
		{"client_ip=2001:db8::1", "[2001:db8::1]:1"},
		{"client_ip=::ffff:192.0.2.1", "192.0.2.1:1"},
		{"client_ip=fe80::1%25eth0", "[fe80::1]:1"},
		{"client_ip=0.0.0.0", ""},
		{"client_ip=::", ""},
		{"client_ip=192.0.2.1:80", ""},
		{"client_ip=example.com", ""},
		{"client_ip=", ""},
		{"", ""},
		{"other=1&client_ip=198.51.100.9", "198.51.100.9:1"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			u, err := url.Parse("ws://h/?" + tt.query)
			if err != nil {
				t.Fatal(err)
			}
			if got := clientAddr(u); got != tt.want {
				t.Errorf("clientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

// rawConn opens a WebSocket and returns it as a byte stream for sending
// hand-made input.
func rawConn(t *testing.T, ts *testServer) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ts.dialWS(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed waits until the server closes c.
func waitClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("server did not close the connection within %v", within)
	}
}

func waitStat(t *testing.T, ts *testServer, what string, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond(ts.srv.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stats %+v", what, ts.srv.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBadInput(t *testing.T) {
	id := turbotunnel.ClientID{1, 2, 3, 4, 5, 6, 7, 8}
	preamble := turbotunnel.AppendPreamble(nil, id)
	tests := []struct {
		name   string
		send   []byte
		reason string // error counter that must rise
		log    string // substring of the logged reason
	}{
		{"no token", []byte("GET / HTTP/1.1\r\n\r\n"), "preamble", "does not start with the token"},
		{"truncated client id", append(bytes.Clone(turbotunnel.Token[:]), 1, 2, 3), "preamble", "inside the client id"},
		{"truncated token", turbotunnel.Token[:4], "preamble", "inside the token"},
		{"four-byte prefix", append(bytes.Clone(preamble), 0xc0, 0x80, 0x80, 0x01), "frame", "longer than 3 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, Config{NumTurbotunnel: 1})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, ts.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			if err := ws.Write(ctx, websocket.MessageBinary, tt.send); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(tt.name, "truncated") {
				// The server waits for the rest until the stream ends.
				ws.Close(websocket.StatusNormalClosure, "")
			} else {
				waitClosed(t, websocketconn.New(ws), 5*time.Second)
			}
			waitStat(t, ts, tt.reason+" error", func(s Stats) bool { return s.Errors[tt.reason] == 1 })
			waitStat(t, ts, "websocket to close", func(s Stats) bool { return s.WebSocketsActive == 0 })
			if !ts.log.contains(tt.log) {
				t.Errorf("log lacks %q: %q", tt.log, ts.log.lines)
			}
		})
	}
}

// TestOversizeAndGarbageFrames: oversize chunks and padding are skipped, the
// connection stays up, and real packets still get through.
func TestOversizeAndGarbageFrames(t *testing.T) {
	ts := startServer(t, Config{NumTurbotunnel: 1})
	var junk bytes.Buffer
	junk.Write(turbotunnel.AppendPreamble(nil, turbotunnel.NewClientID()))
	encapsulation.WriteData(&junk, make([]byte, 3000))              // longer than the read buffer
	encapsulation.WriteData(&junk, make([]byte, turbotunnel.MTU+1)) // longer than a KCP packet
	encapsulation.WritePadding(&junk, 5000)
	encapsulation.WriteData(&junk, []byte("not a kcp packet"))
	c := rawConn(t, ts)
	if _, err := c.Write(junk.Bytes()); err != nil {
		t.Fatal(err)
	}
	waitStat(t, ts, "oversize errors", func(s Stats) bool { return s.Errors["oversize"] == 2 })
	if ts.srv.Stats().WebSocketsActive != 1 {
		t.Fatal("connection closed after skippable frames")
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("no preamble", func(t *testing.T) {
		const timeout = 200 * time.Millisecond
		ts := startServer(t, Config{PreambleTimeout: timeout})
		// Timed from before the dial: the server's timer starts when it
		// accepts the WebSocket, which a loaded machine may do well
		// before rawConn returns.
		start := time.Now()
		c := rawConn(t, ts)
		waitClosed(t, c, 5*time.Second)
		if d := time.Since(start); d < timeout {
			t.Errorf("closed after %v, before the %v timeout", d, timeout)
		}
		waitStat(t, ts, "preamble error", func(s Stats) bool { return s.Errors["preamble"] == 1 })
	})
	t.Run("idle", func(t *testing.T) {
		ts := startServer(t, Config{IdleTimeout: 300 * time.Millisecond})
		c := rawConn(t, ts)
		c.Write(turbotunnel.AppendPreamble(nil, turbotunnel.NewClientID()))
		waitClosed(t, c, 5*time.Second)
		waitStat(t, ts, "websocket to close", func(s Stats) bool { return s.WebSocketsActive == 0 })
	})
}

func TestConnectionLimit(t *testing.T) {
	ts := startServer(t, Config{MaxConns: 2})
	for range 2 {
		rawConn(t, ts)
	}
	waitStat(t, ts, "two websockets", func(s Stats) bool { return s.WebSocketsActive == 2 })
	resp, err := http.Get(strings.Replace(ts.url, "ws://", "http://", 1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection got %s, want 503", resp.Status)
	}
	if ts.srv.Stats().WebSocketsRejected != 1 {
		t.Fatalf("rejected = %d", ts.srv.Stats().WebSocketsRejected)
	}
}

// TestReachabilityCheck: a WebSocket closed before any byte is normal (how
// proxies probe the server) and is not an error.
func TestReachabilityCheck(t *testing.T) {
	ts := startServer(t, Config{})
	c := rawConn(t, ts)
	c.Close()
	waitStat(t, ts, "websocket to close", func(s Stats) bool { return s.WebSocketsTotal == 1 && s.WebSocketsActive == 0 })
	if n := ts.srv.Stats().Errors["preamble"]; n != 0 {
		t.Fatalf("preamble errors = %d", n)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without DialOR succeeded")
	}
	if _, err := New(Config{DialOR: (&echoOR{}).dial, MaxConns: -1}); err == nil {
		t.Error("negative MaxConns accepted")
	}
	s, err := New(Config{DialOR: (&echoOR{}).dial})
	if err != nil {
		t.Fatal(err)
	}
	if s.NumShards() != runtime.GOMAXPROCS(0) {
		t.Errorf("default shards = %d, want %d", s.NumShards(), runtime.GOMAXPROCS(0))
	}
	s.Close()
}

// stallConn stops reading (without closing) once stalled is set, like a
// proxy that hangs.
type stallConn struct {
	net.Conn
	stalled *atomic.Bool
	closed  chan struct{}
	once    sync.Once
}

func (c *stallConn) Read(p []byte) (int, error) {
	if c.stalled.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestStalledWebSocket: a WebSocket that stops reading is closed after the
// write timeout; the client's session then continues over a new one.
func TestStalledWebSocket(t *testing.T) {
	// Long enough that a CPU-starved but live client is not taken for stalled.
	ts := startServer(t, Config{WriteTimeout: 2 * time.Second})
	var stalled atomic.Bool
	var dials atomic.Int32
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := ts.dialWS(ctx, "")
		if err != nil {
			return nil, err
		}
		if dials.Add(1) == 1 {
			return &stallConn{Conn: c, stalled: &stalled, closed: make(chan struct{})}, nil
		}
		return c, nil
	}
	clientLog := &logRecorder{}
	sess, err := turbotunnel.DialSession(turbotunnel.NewRedialPacketConn(turbotunnel.NewClientID(), dial, slog.New(clientLog)))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	echo(t, st, 64<<10)
	if dials.Load() != 1 {
		t.Fatalf("client redialled before the stall: %q; server log %q", clientLog.lines, ts.log.lines)
	}
	stalled.Store(true)
	// The echo of this transfer cannot be delivered until the server gives
	// up on the stalled WebSocket and the client reconnects.
	echo(t, st, 8<<20)
	if ts.srv.Stats().Errors["write"] == 0 {
		t.Errorf("no write error counted for the stalled WebSocket; stats %+v; server log %q; client log %q",
			ts.srv.Stats(), ts.log.lines, clientLog.lines)
	}
	if dials.Load() < 2 {
		t.Error("client did not reconnect")
	}
}

// TestClientClosedSessionEnds: a session whose client closed its only
// stream ends after the linger, while the client is still connected (so
// not by a keep-alive timeout); a new stream within the linger keeps it;
// a stream that tor ends does not end the session.
func TestClientClosedSessionEnds(t *testing.T) {
	t.Run("client closes", func(t *testing.T) {
		ts := startServer(t, Config{})
		sess := dialTestSession(t, ts)
		st := openEcho(t, sess)
		start := time.Now()
		st.Close()
		waitStat(t, ts, "the session to end", func(s Stats) bool { return s.SessionsActive == 0 })
		if d := time.Since(start); d < clientDoneLinger-100*time.Millisecond {
			t.Fatalf("session ended after %v, before the %v linger", d, clientDoneLinger)
		}
	})
	t.Run("client closes and leaves", func(t *testing.T) {
		// The client tears its session down right after closing the
		// stream, as tor's client does on exit: its FIN must still
		// reach the server.
		ts := startServer(t, Config{})
		for range 20 {
			sess := dialTestSession(t, ts)
			st := openEcho(t, sess)
			st.Close()
			sess.Close()
		}
		waitStat(t, ts, "every session to end", func(s Stats) bool { return s.SessionsActive == 0 })
	})
	t.Run("next stream within the linger", func(t *testing.T) {
		ts := startServer(t, Config{})
		sess := dialTestSession(t, ts)
		openEcho(t, sess).Close()
		time.Sleep(clientDoneLinger / 2)
		st := openEcho(t, sess)
		time.Sleep(clientDoneLinger)
		echo(t, st, 1000)
		if s := ts.srv.Stats(); s.SessionsActive != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("tor closes", func(t *testing.T) {
		ts := startServer(t, Config{DialOR: func(ctx context.Context, _ string) (net.Conn, error) {
			a, b := net.Pipe()
			go func() {
				b.Write([]byte("bye"))
				b.Close()
			}()
			return a, nil
		}})
		sess := dialTestSession(t, ts)
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte("hi"))
		st.SetReadDeadline(time.Now().Add(10 * time.Second))
		if got, err := io.ReadAll(st); string(got) != "bye" || err != nil {
			t.Fatalf("read %q, %v", got, err)
		}
		st.Close()
		waitStat(t, ts, "the stream to end", func(s Stats) bool { return s.StreamsActive == 0 })
		time.Sleep(clientDoneLinger + 500*time.Millisecond)
		if s := ts.srv.Stats(); s.SessionsActive != 1 {
			t.Fatalf("a session whose stream tor ended was closed: %+v", s)
		}
	})
}

// dialTestSession starts a client session to ts over one WebSocket.
func dialTestSession(t *testing.T, ts *testServer) *turbotunnel.Session {
	t.Helper()
	pconn := turbotunnel.NewRedialPacketConn(turbotunnel.NewClientID(),
		func(ctx context.Context) (net.Conn, error) { return ts.dialWS(ctx, "") }, nil)
	sess, err := turbotunnel.DialSession(pconn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

// openEcho opens a stream and checks that it echoes.
func openEcho(t *testing.T, sess *turbotunnel.Session) net.Conn {
	t.Helper()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	echo(t, st, 4096)
	return st
}

// TestRequestBodyNotAwaited: a request that is not upgraded is answered and
// its connection closed without waiting for a request body that never
// comes. net/http would otherwise read up to 256 KiB of it after the
// handler returns, with no deadline (the server has no ReadTimeout, which
// would cut WebSockets), holding a goroutine and a socket for as long as
// the client likes.
func TestRequestBodyNotAwaited(t *testing.T) {
	tests := []struct {
		name, request string
		maxConns      int
		fill          int // WebSockets opened first
		status        int
	}{
		{"POST with length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n", 0, 0, http.StatusUpgradeRequired},
		{"chunked GET, no upgrade", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, http.StatusUpgradeRequired},
		{"over the limit", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", 1, 1, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, Config{MaxConns: tt.maxConns})
			for range tt.fill {
				rawConn(t, ts)
			}
			waitStat(t, ts, "websockets", func(s Stats) bool { return s.WebSocketsActive == int64(tt.fill) })
			c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(ts.url, "ws://"), "/"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.request); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no response while the body is outstanding: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %s, want %d", resp.Status, tt.status)
			}
			waitClosed(t, c, 5*time.Second)
		})
	}
}
