package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall/js"
	"time"
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

// dialWebSocket opens a connection to the relay at url with the browser's
// WebSocketStream if it has one, which lets the proxy read only as fast as
// the client takes, and else with a WebSocket, which queues what the relay
// sends up to maxQueued.
func dialWebSocket(ctx context.Context, url string) (relayConn, error) {
	if hasWebSocketStream() {
		return dialWebSocketStream(ctx, url)
	}
	return dialClassicWebSocket(ctx, url)
}

// jsWebSocket is the browser's WebSocket to a relay, as a relayConn. It
// is ours rather than coder/websocket's, which hides the browser's socket
// and with it bufferedAmount, and whose close waits for the closing
// handshake.
//
// A WebSocket delivers message events as they come, with no way to pause
// them: what the client has not taken waits in the queue, and when it
// holds more than maxQueued (the client is slower than the relay, for
// long) the connection ends with errRelayQueueOverflow. The client's
// session survives: it finds another proxy and the server resends.
type jsWebSocket struct {
	v     js.Value // the WebSocket
	in    *jsQueue // messages received, not yet read
	funcs []js.Func
	once  sync.Once // guards the release of v and funcs
}

// dialClassicWebSocket opens a WebSocket to url and waits until it is
// open, it fails, or ctx is done.
func dialClassicWebSocket(ctx context.Context, url string) (_ *jsWebSocket, err error) {
	ctor := js.Global().Get("WebSocket")
	if ctor.Type() != js.TypeFunction {
		return nil, errors.New("this browser has no WebSocket")
	}
	v, err := jsNew(ctor, url)
	if err != nil {
		return nil, fmt.Errorf("new WebSocket: %w", err)
	}
	c := &jsWebSocket{v: v, in: newJSQueue(maxQueued, errRelayQueueOverflow)}
	// Blob, the default, is read asynchronously.
	v.Set("binaryType", "arraybuffer")
	opened := make(chan error, 1)
	c.on("open", func(js.Value) {
		select {
		case opened <- nil:
		default:
		}
	})
	c.on("message", func(e js.Value) {
		b, err := messageBytes(e.Get("data"))
		if err != nil {
			c.in.finish(fmt.Errorf("relay WebSocket: %w", err))
			return
		}
		c.in.push(b)
	})
	// A failed connection fires error, then close; the close event has
	// the status.
	c.on("close", func(e js.Value) {
		err := closeEventError(e)
		c.in.finish(err)
		select {
		case opened <- fmt.Errorf("WebSocket did not open: %w", err):
		default:
		}
	})
	select {
	case err = <-opened:
	case <-ctx.Done():
		err = fmt.Errorf("WebSocket did not open: %w", ctx.Err())
	}
	if err != nil {
		c.abort()
		return nil, err
	}
	return c, nil
}

// closeEventError turns a close event into io.EOF if the relay sent a close
// frame, or an error if the connection failed (1006: none was received).
func closeEventError(e js.Value) error {
	code := e.Get("code").Int()
	if code == 1006 || !e.Get("wasClean").Bool() {
		return fmt.Errorf("WebSocket closed abnormally (status %d)", code)
	}
	return io.EOF
}

// on sets the handler of one event; the handler must not block.
func (c *jsWebSocket) on(event string, h func(js.Value)) {
	f := js.FuncOf(func(_ js.Value, args []js.Value) any {
		h(arg0(args))
		return nil
	})
	c.funcs = append(c.funcs, f)
	c.v.Set("on"+event, f)
}

func (c *jsWebSocket) lost() <-chan error { return c.in.lost }

func (c *jsWebSocket) read(ctx context.Context, p []byte) (int, error) {
	return c.in.read(ctx, p)
}

// write sends p as one binary message. The browser queues it and returns;
// waitWritable paces the writes.
func (c *jsWebSocket) write(_ context.Context, p []byte) error {
	if end, closed := c.in.state(); closed {
		return io.ErrClosedPipe
	} else if end != nil {
		return fmt.Errorf("WebSocket closed: %w", end)
	}
	if s := c.v.Get("readyState").Int(); s != 1 { // OPEN
		return fmt.Errorf("WebSocket not open (readyState %d)", s)
	}
	if _, err := jsCall(c.v, "send", jsBytes(p)); err != nil {
		return fmt.Errorf("WebSocket send: %w", err)
	}
	return nil
}

// waitWritable returns true once the WebSocket holds at most wsHighWater
// unsent, waiting until it drained to wsLowWater if it held more.
func (c *jsWebSocket) waitWritable(done <-chan struct{}) bool {
	return waitDrained(func() int { return c.v.Get("bufferedAmount").Int() }, done)
}

// waitDrained returns true once buffered is at most wsHighWater, waiting
// until it is wsLowWater if it was more. It returns false if done is
// closed first.
func waitDrained(buffered func() int, done <-chan struct{}) bool {
	if buffered() <= wsHighWater {
		return true
	}
	t := time.NewTicker(wsDrainPoll)
	defer t.Stop()
	for buffered() > wsLowWater {
		select {
		case <-t.C:
		case <-done:
			return false
		}
	}
	return true
}

// abort starts the closing handshake and returns; a read in progress
// returns io.ErrClosedPipe at once.
func (c *jsWebSocket) abort() { c.shut(js.Undefined()) }

// close starts the closing handshake with status 1000 and returns.
func (c *jsWebSocket) close() { c.shut(js.ValueOf(1000)) }

// shut ends the connection with the given status (none if undefined),
// releasing the event handlers. It is idempotent.
func (c *jsWebSocket) shut(code js.Value) {
	c.once.Do(func() {
		c.in.close()
		// Unhook before releasing: JavaScript dispatches events one at
		// a time on this thread, so none can reach a released function.
		for _, ev := range []string{"onopen", "onmessage", "onclose"} {
			c.v.Set(ev, js.Null())
		}
		for _, f := range c.funcs {
			f.Release()
		}
		if code.IsUndefined() {
			jsCall(c.v, "close")
		} else {
			jsCall(c.v, "close", code)
		}
	})
}
