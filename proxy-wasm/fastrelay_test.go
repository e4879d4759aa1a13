//go:build !js

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// Sizes of the fast-relay tests.
const (
	// fastRelayCap is the most the relay sends: far more than a page
	// that holds back may take, and little enough that a page that does
	// not hold back survives the test.
	fastRelayCap = 128 << 20
	// fastRelayChunk is the size of the relay's messages.
	fastRelayChunk = 32 << 10
	// pagedDownloadBound is the most the relay may get rid of when the
	// page reads only as fast as the client takes: the client's SCTP
	// receive buffer (pion's, 1 MiB), the page's data channel up to its
	// high-water mark (512 KiB), the proxy's pipe and what the browser
	// and both kernels buffer on the way, with room to spare.
	pagedDownloadBound = 24 << 20
	// queuedDownloadBound is the same for a page that queues what the
	// relay sends (a classic WebSocket): its queue (proxy/lib's maxQueued,
	// 16 MiB) more.
	queuedDownloadBound = pagedDownloadBound + 16<<20
)

// TestBrowserFastRelayDownload has a relay send to a client through the
// page proxy as fast as it can while the client reads nothing. A browser's
// WebSocket delivers message events without pause, so a proxy that reads
// through them takes all the relay sends, in the volunteer's page, without
// bound. Reading through WebSocketStream, which Chromium has, the proxy
// reads only as fast as the client's data channel drains, and the relay's
// writes must block.
func TestBrowserFastRelayDownload(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	sent, ended := runFastRelay(t, false)
	if ended {
		t.Errorf("the proxy ended the relay's connection after %d bytes; with WebSocketStream it should hold back reading instead", sent)
	}
	if sent > pagedDownloadBound {
		t.Errorf("the relay sent %d bytes to a client that reads nothing, more than %d: the page read without bound", sent, pagedDownloadBound)
	}
}

// TestBrowserFastRelayDownloadClassic is TestBrowserFastRelayDownload in a
// page without WebSocketStream (Firefox, Safari): the proxy must keep a
// bounded queue of what the relay sent, and end the relay's connection,
// with a log line, when it overflows.
func TestBrowserFastRelayDownloadClassic(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	sent, ended := runFastRelay(t, true)
	if !ended {
		t.Errorf("the relay's connection was not ended after it sent %d bytes to a client that reads nothing", sent)
	}
	if sent > queuedDownloadBound {
		t.Errorf("the relay sent %d bytes to a client that reads nothing, more than %d: the page queued without bound", sent, queuedDownloadBound)
	}
}

// runFastRelay runs the fast relay against a client that reads nothing,
// through the page proxy, with the browser's WebSocketStream removed if
// classic. It returns how much the relay sent once its writes stalled (or
// reached fastRelayCap), and whether the proxy ended its connection; when
// it did, it requires the page to have said why.
func runFastRelay(t *testing.T, classic bool) (sent int64, ended bool) {
	t.Helper()
	web := webDir(t)
	n := &network{t: t, dir: t.TempDir(), stun: testenv.STUN(t)}
	relay := startFastRelay(t)
	n.relay, n.relayPort = relay.url, relay.port
	n.startBroker()

	_, page := startPageProxy(t, n, web, false)
	if _, err := page.eval(recordConsole); err != nil {
		t.Fatalf("wrap console.log: %v", err)
	}
	if classic {
		forceClassicWebSocket(t, page)
	}
	c := dialBrokerClient(t, n, 256<<10)
	// The client reads nothing; one message tells the relay it is there.
	if _, err := c.rw.Write(make([]byte, 1400)); err != nil {
		t.Fatal(err)
	}

	// Wait until the relay's writes stall for 5 s, it hits the cap, or
	// its connection ends.
	deadline := time.Now().Add(2 * time.Minute)
	last, still := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		sent = relay.sent.Load()
		if relay.ended.Load() || sent >= fastRelayCap {
			break
		}
		if sent != last {
			last, still = sent, time.Now()
		} else if sent > 0 && time.Since(still) > 5*time.Second {
			break
		}
	}
	sent, ended = relay.sent.Load(), relay.ended.Load()
	t.Logf("the relay sent %d bytes (%.1f MiB); connection ended by the proxy: %v", sent, float64(sent)/(1<<20), ended)
	if ended {
		lines := consoleLines(t, page)
		if l := lineWith(strings.Join(lines, "\n"), "queue overflow"); l == "" {
			t.Errorf("the page ended the relay's connection without a log line about its queue; console:\n%s", strings.Join(lines, "\n"))
		} else {
			t.Logf("the page said: %s", l)
		}
	}
	return sent, ended
}

// fastRelay is a WebSocket server in place of the bridge that sends a
// client fastRelayChunk messages as fast as it can, up to fastRelayCap.
type fastRelay struct {
	url   string
	port  int
	sent  atomic.Int64 // bytes written to the client's connection
	ended atomic.Bool  // a write to it failed
}

func startFastRelay(t *testing.T) *fastRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &fastRelay{port: ln.Addr().(*net.TCPAddr).Port}
	r.url = fmt.Sprintf("ws://127.0.0.1:%d/", r.port)
	var conns atomic.Int32
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c, err := websocket.Accept(w, req, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		// The first connection is the proxy's reachability check, before
		// it polls; the second is the client's. Any other gets nothing.
		if conns.Add(1) != 2 {
			c.Read(req.Context())
			return
		}
		ctx, cancel := context.WithCancel(req.Context())
		defer cancel()
		go func() {
			// Read what the client sends, and see the close.
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}()
		msg := make([]byte, fastRelayChunk)
		for r.sent.Load() < fastRelayCap {
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				if req.Context().Err() == nil {
					r.ended.Store(true)
				}
				return
			}
			r.sent.Add(int64(len(msg)))
		}
		<-ctx.Done()
	})}
	go srv.Serve(smallWriteBufferListener{ln})
	t.Cleanup(func() { srv.Close() })
	return r
}

// smallWriteBufferListener gives accepted connections a small send buffer,
// so that the kernel does not absorb what the page does not read.
type smallWriteBufferListener struct{ net.Listener }

func (l smallWriteBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(64 << 10)
	}
	return c, err
}

// recordConsole keeps every console.log line of the page (the proxy's log)
// in window.consoleLines as well.
const recordConsole = `(() => {
	window.consoleLines = [];
	const log = console.log;
	console.log = (...args) => {
		window.consoleLines.push(args.join(" "));
		log.apply(console, args);
	};
	return true;
})()`

func consoleLines(t *testing.T, page *cdpSession) []string {
	t.Helper()
	v, err := page.eval(`window.consoleLines`)
	if err != nil {
		t.Fatalf("read the page's console: %v", err)
	}
	var lines []string
	if err := json.Unmarshal(v, &lines); err != nil {
		t.Fatalf("console lines %s: %v", v, err)
	}
	return lines
}
