package h2client

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestTransportCloseDuringDial: Close while a connection is being dialled
// must not make the dialling request panic (nil map).
func TestTransportCloseDuringDial(t *testing.T) {
	// A server that says nothing: the dial's handshake never ends.
	ln := testenv.ServeTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	dialing := make(chan struct{})
	proceed := make(chan struct{})
	tr := &Transport{DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		close(dialing)
		<-proceed
		var d net.Dialer
		return d.DialContext(ctx, network, ln.Addr().String())
	}}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		req := newRequest(t, "GET", "https://b.test/", "").WithContext(ctx)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-dialing
	tr.Close()
	close(proceed)
	if r := <-done; r != nil {
		t.Fatalf("RoundTrip panicked: %v", r)
	}
}

// TestGoAwayClosesWhenDrained: a connection the server sent GOAWAY on is
// closed once its last stream has finished, not left open until the idle
// timeout (a server that says GOAWAY on every connection and never closes
// it would otherwise have the client keep one open per request).
func TestGoAwayClosesWhenDrained(t *testing.T) {
	c, p := newPair(t, Config{})
	ch := roundTrip(c, newRequest(t, "GET", "https://b.test/1", ""))
	h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	p.write(func(fr *http2.Framer) error { return fr.WriteGoAway(h.StreamID, http2.ErrCodeNo, nil) })
	p.respond(h.StreamID, "one")
	if r := wait(t, ch); r.err != nil || string(r.body) != "one" {
		t.Fatalf("stream at last ID: %q %v", r.body, r.err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after GOAWAY and its last stream")
	}

	// GOAWAY on a connection with nothing open.
	c2, p2 := newPair(t, Config{})
	p2.write(func(fr *http2.Framer) error { return fr.WriteGoAway(0, http2.ErrCodeNo, nil) })
	select {
	case <-c2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("idle connection still open after GOAWAY")
	}
}

// TestAwaitWindowEmptyFrameNegativeWindow: an empty DATA frame (a body
// shorter than its ContentLength ends with one) takes no flow-control
// window, also when the server's smaller SETTINGS_INITIAL_WINDOW_SIZE has
// made the stream's window negative; it used to add the deficit to the
// connection's window.
func TestAwaitWindowEmptyFrameNegativeWindow(t *testing.T) {
	c := &Conn{sendWindow: 1000, peerFrame: 16384, windowChange: make(chan struct{})}
	s := &stream{sendWindow: -500, wake: make(chan struct{}, 1)}
	n, err := c.awaitWindow(context.Background(), s, 0)
	if err != nil || n != 0 {
		t.Fatalf("awaitWindow(0) = %d, %v; want 0, nil", n, err)
	}
	if c.sendWindow != 1000 || s.sendWindow != -500 {
		t.Fatalf("windows after an empty frame: connection %d, stream %d; want 1000, -500", c.sendWindow, s.sendWindow)
	}
}
