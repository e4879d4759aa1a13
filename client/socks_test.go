package main

import (
	"io"
	"net"
	"strings"
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
		{"covertdtls-config=mimic", "not supported"},
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

// TestSOCKSHangUp: when tor gives up on a connection while the client is
// still looking for a proxy, the client stops looking.
func TestSOCKSHangUp(t *testing.T) {
	bin := testenv.Binary(t, "./client")
	c := &chain{t: t, dir: t.TempDir()}
	// Nothing listens on the discard port: every rendezvous fails and
	// Dial keeps retrying until it is cancelled.
	p, socks := c.startClient("client", bin, "-url", "http://127.0.0.1:9/")
	conn, err := net.Dial("tcp", socks)
	if err != nil {
		t.Fatal(err)
	}
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
