package proxy

import (
	"reflect"
	"syscall/js"
	"time"
	"unsafe"

	"github.com/coder/websocket"
)

const (
	// wsHighWater is the most the browser's WebSocket to the relay may
	// hold unsent before the proxy stops taking data from the client.
	// The browser's send never blocks: without a mark, a client that
	// uploads faster than the relay (or the volunteer's uplink) takes it
	// would pile up in the page's memory without bound. Held back, the
	// upload waits in the data channel's receive queue, which is bounded
	// (maxQueued), and the client's acknowledgments slow with it.
	wsHighWater = 1 << 20
	// wsLowWater is where sending resumes. Resuming at the mark would
	// poll after every message; at half of it a poll late by
	// wsDrainPoll still finds data queued at up to 100 MB/s.
	wsLowWater = wsHighWater / 2
	// wsDrainPoll is how often a held-back sender looks at the amount:
	// a WebSocket, unlike a data channel, has no event for it.
	wsDrainPoll = 5 * time.Millisecond
)

// relayPacer holds back writes to the relay while the browser's WebSocket
// holds more than wsHighWater unsent.
type relayPacer struct {
	ws js.Value // the browser's WebSocket; undefined if not found
}

func newRelayPacer(c *websocket.Conn) relayPacer {
	return relayPacer{ws: browserWebSocket(c)}
}

// wait returns true once the WebSocket may take more, waiting until it
// drained to wsLowWater if it held more than wsHighWater. It returns false
// if done is closed first.
func (p relayPacer) wait(done <-chan struct{}) bool {
	if p.ws.IsUndefined() || p.buffered() <= wsHighWater {
		return true
	}
	t := time.NewTicker(wsDrainPoll)
	defer t.Stop()
	for p.buffered() > wsLowWater {
		select {
		case <-t.C:
		case <-done:
			return false
		}
	}
	return true
}

func (p relayPacer) buffered() int {
	return p.ws.Get("bufferedAmount").Int()
}

// browserWebSocket returns the JavaScript WebSocket under c. The library
// keeps it in an unexported field and offers no other way to see its
// bufferedAmount. If a new version of the library moves it, this returns
// undefined and writes go unpaced, as before; TestBrowserSlowRelayUpload
// (proxy-wasm) then fails.
func browserWebSocket(c *websocket.Conn) js.Value {
	conn := reflect.ValueOf(c).Elem()
	ws := conn.FieldByName("ws")
	if !ws.IsValid() || ws.Kind() != reflect.Struct {
		return js.Undefined()
	}
	v := ws.FieldByName("v")
	if !v.IsValid() || v.Type() != reflect.TypeFor[js.Value]() {
		return js.Undefined()
	}
	// The field is unexported: read it through its address.
	return *(*js.Value)(unsafe.Pointer(v.UnsafeAddr()))
}

// closeRelay starts closing the connection to the relay and returns. A
// browser cannot drop a WebSocket without the closing handshake, and the
// library's CloseNow waits for it to end: for the relay's answer, or, from
// a relay that hangs, for the browser's own timeout (more than a minute in
// Chromium). Waited for in a relay's teardown, that kept the client's data
// channel open and its slot taken for as long. The goroutine ends with the
// handshake.
func closeRelay(ws *websocket.Conn) { go ws.CloseNow() }

// awaitRelayReader returns at once. The relay reader is blocked in the
// library, which lets it go only when the closing handshake that
// closeRelay started has ended (a canceled read waits for it too). It
// reads into a pipe already aborted, so it ends on its own then.
func awaitRelayReader(<-chan struct{}) {}

// endRelayCheck starts closing the reachability check's connection normally
// and returns: the check is done once the WebSocket opened, and waiting for
// the relay's answer (closeRelay) would hold back polling, from a relay
// that hangs, until the browser gives up.
func endRelayCheck(ws *websocket.Conn) {
	go ws.Close(websocket.StatusNormalClosure, "")
}
