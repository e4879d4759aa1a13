//go:build !js

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// closingRelaySize is what the closing relay sends before it closes: more
// than the page's data channel holds unsent (its high-water mark, 512 KiB),
// so that some of it still waits there when the close frame comes.
const closingRelaySize = 4 << 20

// TestBrowserRelayCloseDelivers has a relay send a client its last
// bytes and close the connection normally at once, as the bridge does when
// tor closes the client's circuit. Every byte the proxy read from the relay
// must reach the client.
//
// Over WebSocketStream the proxy does not always get every byte the relay
// sent: now and then (about one run in four on 2026-11-30) Chromium drops
// the relay's last 1–3 messages of 128 before the proxy can read them.
// While the proxy reads slower than the relay sends, the page's
// WebSocketStream applies backpressure, and Blink's WebSocket channel then
// holds the frames it has been told of without reading them from the
// network service. When the connection ends (the relay closes TCP after the
// closing handshake), the channel reports the close to the stream and
// disposes of itself without consuming those frames; the stream ends as
// done, and the frames are gone. The proxy cannot reach them, and reading
// without backpressure would give up the bound on what a page holds. So
// here the test only logs that loss; proxy-wasm/README.md names it. The
// Classic twin, which never applies backpressure, must get every byte.
func TestBrowserRelayCloseDelivers(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	runClosingRelay(t, false)
}

// TestBrowserRelayCloseDeliversClassic is
// TestBrowserRelayCloseDelivers in a page without WebSocketStream.
func TestBrowserRelayCloseDeliversClassic(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	runClosingRelay(t, true)
}

func runClosingRelay(t *testing.T, classic bool) {
	t.Helper()
	web := webDir(t)
	n := &network{t: t, dir: t.TempDir(), stun: testenv.STUN(t)}
	closed := make(chan struct{})
	n.relay, n.relayPort = startClosingRelay(t, closingRelaySize, closed)
	n.startBroker()

	ws, page := startPageProxy(t, n, web, false)
	if classic {
		forceClassicWebSocket(t, page)
	}
	c := dialBrokerClient(t, n, 256<<10)
	// One message tells the relay the client is there.
	if _, err := c.rw.Write(make([]byte, 1400)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.pc.Close() })
	defer stop()
	got := 0
	buf := make([]byte, 256<<10)
	for {
		k, err := c.rw.Read(buf)
		got += k
		if err != nil {
			t.Logf("the client's read ended after %d bytes: %v", got, err)
			break
		}
	}
	select {
	case <-closed:
	default:
		t.Fatalf("the client's connection ended after %d bytes before the relay closed", got)
	}
	// What the proxy read from the relay, once the connection is over.
	st := ws.waitStatus("the connection over", 20*time.Second, func(s status) bool { return s.Connections >= 1 && s.Active == 0 })
	if int64(got) != st.BytesDown {
		t.Errorf("the client received %d bytes of the %d the proxy read from the relay", got, st.BytesDown)
	}
	switch {
	case st.BytesDown == closingRelaySize:
	case classic:
		t.Errorf("the proxy read %d bytes of the %d the relay sent before its close", st.BytesDown, closingRelaySize)
	default:
		t.Logf("Chromium's WebSocketStream gave the proxy %d bytes of the %d the relay sent before its close (its known loss at a close)", st.BytesDown, closingRelaySize)
	}
}

// startClosingRelay starts a WebSocket server in place of the bridge that
// sends a client size bytes in 32 KiB messages and then closes the
// connection normally, closing closed once it did. The first connection,
// the proxy's reachability check, only waits for the proxy's close.
func startClosingRelay(t *testing.T, size int, closed chan<- struct{}) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		if conns.Add(1) != 2 {
			c.Read(r.Context())
			return
		}
		// Wait for the client's first message.
		if _, _, err := c.Read(r.Context()); err != nil {
			return
		}
		msg := make([]byte, 32<<10)
		for sent := 0; sent < size; sent += len(msg) {
			if err := c.Write(r.Context(), websocket.MessageBinary, msg[:min(len(msg), size-sent)]); err != nil {
				return
			}
		}
		// Close reads the proxy's answer; nothing else reads.
		c.Close(websocket.StatusNormalClosure, "")
		close(closed)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf("ws://127.0.0.1:%d/", port), port
}
