package main

import (
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestBadBridgeLines: malformed or contradictory bridge-line arguments get
// the SOCKS request refused, with a clear message to tor, and the client
// keeps serving other connections.
func TestBadBridgeLines(t *testing.T) {
	bin := testenv.Binary(t, "./client")
	c := &chain{t: t, dir: t.TempDir()}
	// The broker URL is never reached: every request below is refused
	// before any rendezvous.
	p, socks := c.startClient("client", bin, "-url", "http://127.0.0.1:9/")
	tests := []struct{ args, want string }{
		{"max=abc", "max: not an integer"},
		{"max=0", "max: must be at least 1"},
		{"sqsqueue=https://q.example/1/q;sqscreds=e30=", "sqsqueue cannot be combined with url or ampcache"},
		{"utls-imitate=hellonetscape", "unknown utls-imitate name"},
		{"fingerprint=00", "fingerprint"},
		{"keep-local-addresses=1", "cannot be set in the bridge line"},
		{"covertdtls-config=chrome", "unknown covertdtls-config"},
	}
	for _, tc := range tests {
		d, err := proxy.SOCKS5("tcp", socks, &proxy.Auth{User: tc.args, Password: "\x00"}, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := d.Dial("tcp", "192.0.2.3:80")
		if err == nil {
			conn.Close()
			t.Fatalf("%s: SOCKS request granted", tc.args)
		}
		line := p.WaitFor(t, tc.want, 10*time.Second)
		if !strings.HasPrefix(line, "LOG SEVERITY=error") && !strings.Contains(line, "level=ERROR") {
			t.Errorf("%s: reported as %q, want an error-level LOG line to tor", tc.args, line)
		}
	}
	select {
	case <-p.Exited():
		t.Fatalf("client exited after bad bridge lines:\n%s", p.Output())
	default:
	}
	// Garbage instead of SOCKS does not stop the listener either.
	if conn, err := net.Dial("tcp", socks); err == nil {
		conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		conn.Close()
	}
	d, _ := proxy.SOCKS5("tcp", socks, &proxy.Auth{User: "max=x", Password: "\x00"}, proxy.Direct)
	if _, err := d.Dial("tcp", "192.0.2.3:80"); err == nil {
		t.Fatal("request after garbage granted")
	}
	if !strings.Contains(p.Output(), "CMETHODS DONE") {
		t.Errorf("no CMETHODS DONE in output:\n%s", p.Output())
	}
}

// startUnreachableClient starts our client with a broker URL where nothing
// listens (the discard port), so every rendezvous fails and a Dial keeps
// retrying until it is cancelled, and opens a TCP connection to its SOCKS
// listener.
func startUnreachableClient(t *testing.T) (*testenv.Process, net.Conn) {
	t.Helper()
	bin := testenv.Binary(t, "./client")
	c := &chain{t: t, dir: t.TempDir()}
	p, socks := c.startClient("client", bin, "-url", "http://127.0.0.1:9/")
	conn, err := net.Dial("tcp", socks)
	if err != nil {
		t.Fatal(err)
	}
	return p, conn
}

// TestSOCKSHangUp: when tor gives up on a connection while the client is
// still looking for a proxy, the client stops looking.
func TestSOCKSHangUp(t *testing.T) {
	p, conn := startUnreachableClient(t)
	// SOCKS5: no auth, then CONNECT 192.0.2.3:80; no reply comes until a
	// proxy is found.
	conn.Write([]byte{5, 1, 0})
	var reply [2]byte
	if _, err := io.ReadFull(conn, reply[:]); err != nil || reply != [2]byte{5, 0} {
		t.Fatalf("method reply %v, %v", reply, err)
	}
	conn.Write([]byte{5, 1, 0, 1, 192, 0, 2, 3, 0, 80})
	p.WaitFor(t, "proxy attempt failed", 20*time.Second)
	conn.Close()
	p.WaitFor(t, "could not connect through Snowflake", 10*time.Second)
}

// TestSOCKSPipelined: a SOCKS client may send its greeting, credentials and
// request in one write without waiting for the replies (RFC 1928 does not
// forbid it, and some do). The request must still be read: here the bridge
// line is bad, so a reply that refuses it proves the request arrived.
func TestSOCKSPipelined(t *testing.T) {
	bin := testenv.Binary(t, "./client")
	c := &chain{t: t, dir: t.TempDir()}
	p, socks := c.startClient("client", bin, "-url", "http://127.0.0.1:9/")
	args := "max=abc"
	withAuth := append([]byte{5, 1, 2, 1, byte(len(args))}, args...)
	withAuth = append(withAuth, 1, 0)
	tests := []struct {
		name    string
		hello   []byte // greeting (and credentials)
		replies []byte // method selection (and authentication status)
	}{
		{"credentials", withAuth, []byte{5, 2, 1, 0}},
		{"no auth", []byte{5, 1, 0}, []byte{5, 0}},
	}
	for _, tc := range tests {
		conn, err := net.Dial("tcp", socks)
		if err != nil {
			t.Fatal(err)
		}
		// Everything in one write.
		msg := append(append([]byte{}, tc.hello...), 5, 1, 0, 1, 192, 0, 2, 3, 0, 80)
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		got := make([]byte, len(tc.replies))
		if _, err := io.ReadFull(conn, got); err != nil {
			t.Fatalf("%s: reading the handshake replies: %v", tc.name, err)
		}
		if string(got) != string(tc.replies) {
			t.Fatalf("%s: handshake replies %v, want %v", tc.name, got, tc.replies)
		}
		if tc.name == "credentials" {
			var reply [10]byte
			if _, err := io.ReadFull(conn, reply[:]); err != nil {
				t.Fatalf("%s: no reply to the request: %v", tc.name, err)
			}
			if reply[0] != 5 || reply[1] == 0 {
				t.Errorf("%s: reply %v, want a refusal", tc.name, reply)
			}
			p.WaitFor(t, "max: not an integer", 10*time.Second)
		} else {
			// A good (empty) bridge line: the client starts looking for a
			// proxy, which it can only do after reading the request.
			p.WaitFor(t, "proxy attempt failed", 30*time.Second)
		}
		conn.Close()
	}
}

// TestHandshakeConnKeepsEarlyData: with the whole handshake and the first
// application bytes in one segment, goptlib parses the request and the
// application bytes are read afterwards, in order.
func TestHandshakeConnKeepsEarlyData(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	args := "url=https://broker.invalid/;max=2"
	msg := append([]byte{5, 2, 0, 2, 1, byte(len(args))}, args...)
	msg = append(msg, 1, 0, 5, 1, 0, 3, 9, 'b', 'r', 'i', 'd', 'g', 'e', '.', 'i', 'n', 0, 80)
	early := strings.Repeat("early data ", 100)
	msg = append(msg, early...)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(msg)
		io.Copy(io.Discard, c)
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := socksHandshake(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if sc.Req.Target != "bridge.in:80" {
		t.Errorf("target %q", sc.Req.Target)
	}
	if v, _ := sc.Req.Args.Get("max"); v != "2" {
		t.Errorf("args %v", sc.Req.Args)
	}
	got := make([]byte, len(early))
	sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(sc, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != early {
		t.Errorf("early data %q", got)
	}
}

// TestSOCKSStalledClient: a local client that connects and never finishes
// its handshake does not hold up the next one.
func TestSOCKSStalledClient(t *testing.T) {
	bin := testenv.Binary(t, "./client")
	c := &chain{t: t, dir: t.TempDir()}
	p, socks := c.startClient("client", bin, "-url", "http://127.0.0.1:9/")
	for i := 0; i < 3; i++ {
		stalled, err := net.Dial("tcp", socks)
		if err != nil {
			t.Fatal(err)
		}
		defer stalled.Close()
		stalled.Write([]byte{5}) // a greeting cut short
	}
	start := time.Now()
	d, _ := proxy.SOCKS5("tcp", socks, &proxy.Auth{User: "max=x", Password: "\x00"}, proxy.Direct)
	if _, err := d.Dial("tcp", "192.0.2.3:80"); err == nil {
		t.Fatal("bad bridge line granted")
	}
	p.WaitFor(t, "max: not an integer", 10*time.Second)
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("answer took %v behind stalled handshakes", el)
	}
}

// TestShutdownCutsSOCKSHandshake: a SOCKS connection that has sent nothing
// yet does not hold the client's exit for goptlib's 5 s handshake timeout.
func TestShutdownCutsSOCKSHandshake(t *testing.T) {
	p, conn := startUnreachableClient(t)
	defer conn.Close()
	time.Sleep(200 * time.Millisecond) // the handshake has begun
	start := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
		t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(2500 * time.Millisecond):
		t.Fatalf("still running %v after SIGTERM with a SOCKS handshake pending:\n%s", time.Since(start), p.Output())
	}
}
