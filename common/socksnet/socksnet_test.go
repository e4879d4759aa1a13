package socksnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in         string
		addr, user string
		pass       string
		err        string
	}{
		{in: "socks5://127.0.0.1:1080", addr: "127.0.0.1:1080"},
		{in: "socks5://alice:s3cret@127.0.0.1:1080", addr: "127.0.0.1:1080", user: "alice", pass: "s3cret"},
		{in: "socks5://bob@[::1]:9050", addr: "[::1]:9050", user: "bob"},
		{in: "socks5://proxy.invalid:1080", addr: "proxy.invalid:1080"},
		{in: "http://127.0.0.1:8080", err: "only socks5"},
		{in: "socks4a://127.0.0.1:1080", err: "only socks5"},
		{in: "socks5://127.0.0.1", err: "host:port"},
		{in: "socks5://127.0.0.1:0", err: "bad port"},
		{in: "socks5://127.0.0.1:99999", err: "bad port"},
		{in: "socks5://:1080", err: "host:port"},
		{in: "socks5://" + strings.Repeat("u", 256) + "@127.0.0.1:1080", err: "255 bytes"},
		{in: "socks5://:pw@127.0.0.1:1080", err: "needs a username"},
	}
	for _, tc := range tests {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		cfg, err := ParseURL(u)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if cfg.Addr != tc.addr || cfg.Username != tc.user || cfg.Password != tc.pass {
			t.Errorf("%s: got %+v", tc.in, cfg)
		}
	}
	if _, err := ParseURL(&url.URL{Scheme: "http", Host: "127.0.0.1:1"}); !errors.Is(err, ErrUnsupportedScheme) {
		t.Errorf("http proxy: %v, want ErrUnsupportedScheme", err)
	}
}

// startServer runs the test SOCKS5 server on loopback.
func startServer(t *testing.T, user, pass string) *testenv.SOCKS5Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return testenv.ServeSOCKS5(t, ln, &testenv.SOCKS5Server{Username: user, Password: pass})
}

// echoTCP accepts connections and echoes them.
func echoTCP(t *testing.T) string {
	t.Helper()
	return testenv.ServeTCP(t, func(c net.Conn) { io.Copy(c, c) }).Addr().String()
}

func TestConnect(t *testing.T) {
	srv := startServer(t, "alice", "s3cret")
	target := echoTCP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	n, err := New(Config{Addr: srv.Addr(), Username: "alice", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.DialContext(ctx, "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("through the proxy "), 1000)
	go c.Write(msg)
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo differs")
	}
	c.Close()
	if srv.Connects.Load() != 1 {
		t.Errorf("server granted %d CONNECTs, want 1", srv.Connects.Load())
	}

	// A host name is passed to the proxy, which resolves it.
	c, err = n.DialContext(ctx, "tcp", strings.Replace(target, "127.0.0.1", "localhost", 1))
	if err != nil {
		t.Fatalf("dial by name: %v", err)
	}
	c.Close()

	bad, _ := New(Config{Addr: srv.Addr(), Username: "alice", Password: "wrong"})
	if _, err := bad.DialContext(ctx, "tcp", target); err == nil || !strings.Contains(err.Error(), "rejected the username") {
		t.Errorf("wrong password: %v", err)
	}
	anon, _ := New(Config{Addr: srv.Addr()})
	if _, err := anon.DialContext(ctx, "tcp", target); err == nil || !strings.Contains(err.Error(), "none of our authentication methods") {
		t.Errorf("no credentials: %v", err)
	}
	// A refused target comes back as the server's reply code.
	closed := testenv.FreePort(t)
	_, err = n.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(closed)))
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != 5 {
		t.Errorf("refused target: %v, want reply code 5", err)
	}
	if _, err := n.DialContext(ctx, "udp", target); !errors.Is(err, ErrNotSupported) {
		t.Errorf("udp dial: %v", err)
	}
}

// lateCancelConn cancels the dial's context as the last byte of the
// SOCKS reply is read, and holds the cancellation's expired deadline back
// until the handshake has cleared its deadlines (or 500 ms have passed).
// That is an order the scheduler may choose when a context ends just as
// the handshake completes.
type lateCancelConn struct {
	net.Conn
	cancel    context.CancelFunc
	replyLen  int // bytes the server sends before the tunnel starts
	read      int
	cleared   chan struct{} // closed when a zero deadline is set
	clearOnce sync.Once
	expired   chan struct{} // closed when the past deadline is applied
}

func (c *lateCancelConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	before := c.read
	c.read += n
	if before < c.replyLen && c.read >= c.replyLen {
		c.cancel()
	}
	return n, err
}

func (c *lateCancelConn) SetDeadline(t time.Time) error {
	switch {
	case t.IsZero():
		err := c.Conn.SetDeadline(t)
		c.clearOnce.Do(func() { close(c.cleared) })
		return err
	case t.Before(time.Now()):
		select {
		case <-c.cleared:
		case <-time.After(500 * time.Millisecond):
		}
		err := c.Conn.SetDeadline(t)
		close(c.expired)
		return err
	}
	return c.Conn.SetDeadline(t)
}

// TestDialCancelledAsHandshakeEnds: a context that ends just as the
// CONNECT reply arrives must not leave the returned connection with an
// expired deadline, which would fail its first read.
func TestDialCancelledAsHandshakeEnds(t *testing.T) {
	// A SOCKS5 server that grants one CONNECT and then echoes.
	ln := testenv.ServeTCP(t, func(c net.Conn) {
		buf := make([]byte, 10)
		if _, err := io.ReadFull(c, buf[:3]); err != nil {
			return
		}
		c.Write([]byte{5, 0})
		if _, err := io.ReadFull(c, buf[:10]); err != nil {
			return
		}
		c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 1})
		io.Copy(c, c)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var hook *lateCancelConn
	n, err := New(Config{Addr: ln.Addr().String(), Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		hook = &lateCancelConn{Conn: c, cancel: cancel, replyLen: 2 + 10,
			cleared: make(chan struct{}), expired: make(chan struct{})}
		return hook, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.DialContext(ctx, "tcp", "127.0.0.1:9")
	if err != nil {
		// Refusing the connection is also a correct answer to the
		// cancellation.
		t.Skipf("dial: %v", err)
	}
	defer c.Close()
	select {
	case <-hook.expired:
	case <-time.After(5 * time.Second):
		t.Fatal("the cancellation never set its deadline")
	}
	// No deadline of our own here: it would replace the one under test.
	timer := time.AfterFunc(10*time.Second, func() { c.Close() })
	defer timer.Stop()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatalf("write on the returned connection: %v", err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read on the returned connection: %v", err)
	}
}

// TestConnectToProxyHasDeadline checks that the connect to the SOCKS server
// is bounded even when the caller gives no deadline, as pion's ListenUDP
// does: a proxy that never answers must not hold candidate gathering for
// the system's connect timeout.
func TestConnectToProxyHasDeadline(t *testing.T) {
	var deadline time.Time
	var hasDeadline bool
	refuse := errors.New("refused by the test")
	n, err := New(Config{Addr: "127.0.0.1:9", Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		deadline, hasDeadline = ctx.Deadline()
		return nil, refuse
	}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := n.ListenUDP("udp4", nil); !errors.Is(err, refuse) {
		t.Fatalf("ListenUDP: %v, want the dial's error", err)
	}
	if !hasDeadline {
		t.Fatal("the connect to the proxy had no deadline")
	}
	if d := deadline.Sub(start); d <= 0 || d > handshakeTimeout+time.Second {
		t.Errorf("connect deadline %v after the call, want within %v", d, handshakeTimeout)
	}
}
