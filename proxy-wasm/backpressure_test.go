//go:build !js

package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// Sizes of TestBrowserSlowRelayUpload.
const (
	// slowUpload is what the client sends: far more than the relay takes
	// while it is being sent, and less than the page's data channel
	// queue holds (maxQueued, 16 MiB), so a proxy that paces keeps the
	// connection.
	slowUpload = 6 << 20
	// slowRelayRate is how fast the relay reads, in bytes a second.
	slowRelayRate = 256 << 10
	// wsBufferedBound is the most the page's WebSocket may hold unsent:
	// proxy/lib's wsHighWater (1 MiB) and one WebSocket message (32 KiB),
	// with room to spare. Without pacing it holds most of slowUpload.
	wsBufferedBound = 1<<20 + 64<<10
)

// TestBrowserSlowRelayUpload has a client upload through the page proxy
// faster than the relay reads. The browser's WebSocket send never blocks,
// so a proxy that forwards whatever the data channel delivers piles the
// upload up in the WebSocket's bufferedAmount, in the volunteer's page,
// without bound. The proxy must instead let it wait in its data channel
// queue, which is bounded, and deliver every byte intact. Chromium has
// WebSocketStream, which the proxy then uses: what it holds unsent is
// what its writes have not settled.
func TestBrowserSlowRelayUpload(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	runSlowRelayUpload(t, false)
}

// TestBrowserSlowRelayUploadClassic is TestBrowserSlowRelayUpload in a page
// without WebSocketStream (Firefox, Safari), where the proxy uses a
// WebSocket.
func TestBrowserSlowRelayUploadClassic(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	runSlowRelayUpload(t, true)
}

func runSlowRelayUpload(t *testing.T, classic bool) {
	web := webDir(t)
	n := &network{t: t, dir: t.TempDir(), stun: testenv.STUN(t)}
	var received <-chan [sha256.Size]byte
	n.relay, n.relayPort, received = startSlowRelay(t, slowUpload, slowRelayRate)
	n.startBroker()

	_, page := startPageProxy(t, n, web, false)
	if _, err := page.eval(recordWebSockets); err != nil {
		t.Fatalf("wrap WebSocket: %v", err)
	}
	if classic {
		forceClassicWebSocket(t, page)
	}
	c := dialBrokerClient(t, n, 256<<10)

	data := make([]byte, slowUpload)
	rand.Read(data)
	go func() {
		begin := time.Now()
		defer func() { t.Logf("the client wrote for %v", time.Since(begin)) }()
		// As a Snowflake client's KCP does: 1400-byte messages.
		for off := 0; off < len(data); off += 1400 {
			if _, err := c.rw.Write(data[off:min(off+1400, len(data))]); err != nil {
				return
			}
		}
	}()

	timeout := time.After(time.Duration(slowUpload/slowRelayRate)*time.Second + time.Minute)
	var got [sha256.Size]byte
	select {
	case got = <-received:
	case <-timeout:
		t.Fatalf("the relay did not receive %d bytes; page WebSocket: %s", slowUpload, wsReport(page))
	}
	if want := sha256.Sum256(data); got != want {
		t.Errorf("the relay received %d bytes whose SHA-256 differs from what the client sent", slowUpload)
	}
	var most int64
	if v, err := page.eval(`window.mostWSBuffered`); err != nil {
		t.Fatalf("read the page's WebSocket bufferedAmount: %v", err)
	} else if err := json.Unmarshal(v, &most); err != nil {
		t.Fatalf("bufferedAmount %s: %v", v, err)
	}
	var seen struct{ Sockets, StreamWrites int }
	if v, err := page.eval(`({sockets: window.recordedWSs.length, streamWrites: window.wsStreamWrites})`); err != nil {
		t.Fatalf("read what the page sent with: %v", err)
	} else if err := json.Unmarshal(v, &seen); err != nil {
		t.Fatalf("%s: %v", v, err)
	}
	switch {
	case classic && seen.Sockets == 0:
		t.Fatalf("the page made no WebSocket; WebSocketStream writes: %d", seen.StreamWrites)
	case !classic && seen.StreamWrites == 0:
		t.Fatalf("the page wrote nothing to a WebSocketStream; WebSockets: %d", seen.Sockets)
	}
	t.Logf("the page's WebSocket held at most %d bytes unsent (%d WebSockets, %d WebSocketStream writes)", most, seen.Sockets, seen.StreamWrites)
	if most > wsBufferedBound {
		t.Errorf("the page's WebSocket held %d bytes unsent, more than %d: the upload was not paced", most, wsBufferedBound)
	}
}

// recordWebSockets wraps the page's WebSocket constructor and samples the
// bufferedAmount of every socket made, keeping the largest seen in
// window.mostWSBuffered. A WebSocketStream has no bufferedAmount: it wraps
// the write of stream writers (the proxy's only writable streams) and
// counts what they hold unsettled in the same figure.
const recordWebSockets = `(() => {
	const Orig = window.WebSocket;
	const sockets = [];
	window.mostWSBuffered = 0;
	const Recorded = function (...args) {
		const ws = new Orig(...args);
		sockets.push(ws);
		return ws;
	};
	Recorded.prototype = Orig.prototype;
	Object.setPrototypeOf(Recorded, Orig);
	window.WebSocket = Recorded;
	window.recordedWSs = sockets;
	setInterval(() => {
		for (const ws of sockets) {
			window.mostWSBuffered = Math.max(window.mostWSBuffered, ws.bufferedAmount);
		}
	}, 5);
	const write = WritableStreamDefaultWriter.prototype.write;
	let unsettled = 0;
	window.wsStreamWrites = 0;
	WritableStreamDefaultWriter.prototype.write = function (chunk) {
		const n = chunk.byteLength || 0;
		window.wsStreamWrites++;
		unsettled += n;
		window.mostWSBuffered = Math.max(window.mostWSBuffered, unsettled);
		const p = write.call(this, chunk);
		p.then(() => { unsettled -= n; }, () => { unsettled -= n; });
		return p;
	};
	return true;
})()`

// wsReport describes the page's WebSockets, to explain a failure.
func wsReport(page *cdpSession) string {
	v, err := page.eval(`JSON.stringify({most: window.mostWSBuffered, streamWrites: window.wsStreamWrites,
		sockets: window.recordedWSs.map(ws => ({state: ws.readyState, buffered: ws.bufferedAmount}))})`)
	if err != nil {
		return err.Error()
	}
	return string(v)
}

// startSlowRelay starts a WebSocket server on loopback, in place of the
// bridge server, that reads at most rate bytes a second through a small
// TCP receive buffer, so that what it has not read waits in the sender.
// Once it has read size bytes it sends their SHA-256 on the returned
// channel.
func startSlowRelay(t *testing.T, size, rate int) (string, int, <-chan [sha256.Size]byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan [sha256.Size]byte, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		h := sha256.New()
		got := 0
		start := time.Now()
		for got < size {
			_, rd, err := c.Reader(r.Context())
			if err != nil {
				return
			}
			for {
				k, err := io.CopyN(h, rd, 16<<10)
				got += int(k)
				// Hold the average at rate from the start.
				time.Sleep(time.Until(start.Add(time.Duration(got) * time.Second / time.Duration(rate))))
				if err == io.EOF {
					break
				}
				if err != nil {
					return
				}
			}
		}
		var sum [sha256.Size]byte
		copy(sum[:], h.Sum(nil))
		received <- sum
		// Stay open until the test ends, as a bridge would.
		c.Read(r.Context())
	})}
	go srv.Serve(smallReadBufferListener{ln})
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf("ws://127.0.0.1:%d/", port), port, received
}

// smallReadBufferListener gives accepted connections a small receive
// buffer, so that the kernel does not absorb what the relay reads slowly.
type smallReadBufferListener struct{ net.Listener }

func (l smallReadBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(32 << 10)
	}
	return c, err
}
