//go:build !js

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestBrowserStalledRelayRelease has a client leave the page proxy while
// the relay has stopped reading and never answers a close. The client's
// slot must be released at once, as the native proxy does by closing its
// TCP connection: a browser cannot drop a WebSocket without the closing
// handshake, which here waits for the browser's own timeout.
func TestBrowserStalledRelayRelease(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	ws, _, c := stalledRelayClient(t)
	if _, err := c.rw.Write(make([]byte, 1400)); err != nil {
		t.Fatal(err)
	}
	ws.waitStatus("the client counted as active", 20*time.Second, func(s status) bool { return s.Active == 1 })

	left := time.Now()
	c.pc.Close()
	ws.waitStatus("the client's slot released", 90*time.Second, func(s status) bool { return s.Active == 0 })
	took := time.Since(left)
	t.Logf("the slot was released %v after the client left", took)
	if took > 10*time.Second {
		t.Errorf("the slot was released %v after the client left, want within 10s", took.Round(time.Second))
	}
}

// TestBrowserStalledRelayCheck starts the page proxy with a relay that
// accepts WebSockets and then hangs. The reachability check only needs
// the WebSocket to open; the proxy must not wait for the relay to answer
// its close (the browser's timeout, more than a minute) before it polls.
func TestBrowserStalledRelayCheck(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	web := webDir(t)
	n := &network{t: t, dir: t.TempDir(), stun: testenv.STUN(t)}
	n.relay, n.relayPort = startStalledRelay(t, false)
	n.startBroker()
	// It fails unless the proxy polls within 20 s.
	startPageProxy(t, n, web, false)
}

// stalledRelayClient starts a relay that hangs (startStalledRelay), a broker
// and a page proxy whose WebSocketStreams are counted (recordStreams), and
// connects a bare client through the proxy.
func stalledRelayClient(t *testing.T) (*webServer, *cdpSession, *brokerClient) {
	t.Helper()
	web := webDir(t)
	n := &network{t: t, dir: t.TempDir(), stun: testenv.STUN(t)}
	n.relay, n.relayPort = startStalledRelay(t, true)
	n.startBroker()
	ws, page := startPageProxy(t, n, web, false)
	if _, err := page.eval(recordStreams); err != nil {
		t.Fatalf("wrap WebSocketStream: %v", err)
	}
	return ws, page, dialBrokerClient(t, n, 256<<10)
}

// startStalledRelay starts a WebSocket server on loopback, in place of the
// bridge server, that accepts connections and then neither reads nor
// writes until the test ends, as a relay whose process hangs would. Its
// small receive buffer (smallReadBufferListener) keeps the kernel from
// absorbing megabytes of what the proxy writes to it. The first connection, the proxy's reachability check, it serves normally if
// serveCheck is set.
func startStalledRelay(t *testing.T, serveCheck bool) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	end := make(chan struct{})
	// ended and wg are guarded by mu, so that no handler joins wg once the
	// cleanup waits on it (a connection may arrive during the cleanup).
	var (
		mu    sync.Mutex
		ended bool
		wg    sync.WaitGroup
	)
	var checked atomic.Bool
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		if serveCheck && checked.CompareAndSwap(false, true) {
			// The proxy's reachability check, before it polls: a
			// relay that works until it hangs.
			c.Read(r.Context())
			c.CloseNow()
			return
		}
		mu.Lock()
		if ended {
			mu.Unlock()
			c.CloseNow()
			return
		}
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		<-end
		c.CloseNow()
	})}
	go srv.Serve(smallReadBufferListener{ln})
	t.Cleanup(func() {
		mu.Lock()
		ended = true
		close(end)
		mu.Unlock()
		wg.Wait()
		srv.Close()
	})
	port := ln.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf("ws://127.0.0.1:%d/", port), port
}

// TestBrowserStalledRelayReadSettles has a client leave the page proxy while
// the relay hangs, as in TestBrowserStalledRelayRelease, and looks at the
// read the proxy had asked of its WebSocketStream. The abort must settle
// it: left pending, it keeps the proxy's callbacks, and through them the
// connection's memory, alive until the browser gives up on the closing
// handshake, more than a minute later, for every such client.
func TestBrowserStalledRelayReadSettles(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	ws, page, c := stalledRelayClient(t)
	if _, err := c.rw.Write(make([]byte, 1400)); err != nil {
		t.Fatal(err)
	}
	ws.waitStatus("the client counted as active", 20*time.Second, func(s status) bool { return s.Active == 1 })
	page.waitTrue(`window.wssReadsPending > 0`, 10*time.Second)

	left := time.Now()
	c.pc.Close()
	ws.waitStatus("the client's slot released", 90*time.Second, func(s status) bool { return s.Active == 0 })
	page.waitTrue(`window.wssReadsPending === 0`, 10*time.Second)
	t.Logf("the pending read settled within %v of the client leaving", time.Since(left).Round(100*time.Millisecond))
}

// stalledUpload is what TestBrowserStalledRelayUpload has the client
// send: more than the relay's kernel and the browser take before the
// proxy's writes stall, and less than the page's data channel queue holds
// (maxQueued, 16 MiB).
const stalledUpload = 6 << 20

// TestBrowserStalledRelayUpload has a client upload through the page
// proxy to a relay that hangs, until the proxy's writes to its
// WebSocketStream stall, and then leave.
//
// The client's slot must be released within 10 s: the relay has
// deliverTimeout (5 s) to take what the client sent before its close, and
// the proxy's reader of the channel, blocked on the full pipe to the relay,
// cannot see the close itself.
//
// Chromium keeps the writes it was handed until it gives up on the closing
// handshake, more than a minute after the abort, and with them their data
// and the proxy's callbacks, for every such client; aborting the stream's
// writer does not release the one in progress. So the proxy must not have
// handed it more than one message (maxWSMessage, 32 KiB) when the relay
// stalls.
func TestBrowserStalledRelayUpload(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	ws, page, c := stalledRelayClient(t)
	go func() {
		msg := make([]byte, 1400)
		for sent := 0; sent < stalledUpload; sent += len(msg) {
			if _, err := c.rw.Write(msg); err != nil {
				return
			}
		}
	}()
	ws.waitStatus("the client counted as active", 20*time.Second, func(s status) bool { return s.Active == 1 })
	// The relay's side is full once writes are pending and none has
	// settled for 2 s, after the kernel's buffers took what they could.
	page.waitTrue(`window.wssWritesPending > 0 && window.wssWriteBytesSettled >= 256 * 1024 &&
		Date.now() - window.wssLastSettle > 2000`, 30*time.Second)
	t.Logf("pending before the client left: %s", streamWritesReport(t, page))

	left := time.Now()
	c.pc.Close()
	ws.waitStatus("the client's slot released", 90*time.Second, func(s status) bool { return s.Active == 0 })
	if took := time.Since(left); took > 10*time.Second {
		t.Errorf("the slot was released %v after the client left, want within 10s", took.Round(100*time.Millisecond))
	} else {
		t.Logf("the slot was released %v after the client left", took.Round(100*time.Millisecond))
	}
	v, err := page.eval(`window.wssWriteBytesPending`)
	if err != nil {
		t.Fatalf("read the pending writes: %v", err)
	}
	var pending int
	if err := json.Unmarshal(v, &pending); err != nil {
		t.Fatalf("pending bytes %s: %v", v, err)
	}
	if pending > 32<<10 {
		t.Errorf("the relay stream's writes held %d bytes %v after the client left, more than one message (32768): %s",
			pending, time.Since(left).Round(100*time.Millisecond), streamWritesReport(t, page))
	} else {
		t.Logf("the relay stream's writes held %s %v after the client left", streamWritesReport(t, page), time.Since(left).Round(100*time.Millisecond))
	}
}

// streamWritesReport describes the relay stream's pending writes.
func streamWritesReport(t *testing.T, page *cdpSession) string {
	t.Helper()
	v, err := page.eval(`JSON.stringify({writes: window.wssWritesPending, bytes: window.wssWriteBytesPending})`)
	if err != nil {
		return err.Error()
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return string(v)
	}
	return s
}

// recordStreams wraps the page's WebSocketStream so that the reads of its
// readers and the writes of its writers are counted while unsettled: reads
// in window.wssReadsPending, writes in window.wssWritesPending and their
// bytes in window.wssWriteBytesPending. window.wssWriteBytesSettled sums
// the bytes of settled writes, and window.wssLastSettle is when the last
// write settled. Only WebSocketStreams' readers and writers are wrapped,
// not those of other streams (the broker polls' fetches).
const recordStreams = `(() => {
	const Orig = window.WebSocketStream;
	window.wssReadsPending = 0;
	window.wssWritesPending = 0;
	window.wssWriteBytesPending = 0;
	window.wssWriteBytesSettled = 0;
	window.wssLastSettle = Date.now();
	// counted replaces obj[name], a method returning a promise, with one
	// that calls start(args) first and, once the promise settles, the
	// function start returned.
	const counted = (obj, name, start) => {
		const orig = obj[name];
		obj[name] = function (...a) {
			const settled = start(...a);
			const p = orig.apply(this, a);
			p.then(settled, settled);
			return p;
		};
	};
	const wrapGet = (stream, getter, wrap) => {
		const get = stream[getter];
		stream[getter] = function (...a) {
			const x = get.apply(this, a);
			wrap(x);
			return x;
		};
	};
	window.WebSocketStream = function (...args) {
		const s = new Orig(...args);
		s.opened.then((info) => {
			wrapGet(info.readable, "getReader", (r) => counted(r, "read", () => {
				window.wssReadsPending++;
				return () => { window.wssReadsPending--; };
			}));
			wrapGet(info.writable, "getWriter", (w) => counted(w, "write", (chunk) => {
				const n = chunk.byteLength || 0;
				window.wssWritesPending++;
				window.wssWriteBytesPending += n;
				return () => {
					window.wssWritesPending--;
					window.wssWriteBytesPending -= n;
					window.wssWriteBytesSettled += n;
					window.wssLastSettle = Date.now();
				};
			}));
		}, () => {});
		return s;
	};
	return true;
})()`
