package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall/js"
	"time"

	"github.com/pion/webrtc/v5"
)

// maxQueued bounds the bytes received from the client and not yet taken by
// the relay. Browsers cannot pause a data channel's message events, so the
// queue is the only place incoming data can wait while the relay is slower
// than the client (the relay's WebSocket is held to wsHighWater).
// A Snowflake client has far less in flight (its smux window); a queue this
// long means a client that ignores it, or something stuck.
//
// It bounds the other direction the same way in a browser without
// WebSocketStream, whose WebSocket cannot pause its message events either
// (websocket_js.go): the server has no more in flight to one client than
// the client's smux window (4 MiB) and KCP's retransmissions of it.
const maxQueued = 16 << 20

// errQueueOverflow ends a connection whose receive queue overflowed.
var errQueueOverflow = errors.New("data channel receive queue overflow")

// jsChannel is a browser RTCDataChannel as a byte stream. pion's own js
// Detach hands each message to a new goroutine that blocks on an unbuffered
// channel: message order is then up to the scheduler, the goroutines leak
// when the reader stops, and Read never reports the channel's close. This
// one queues messages in arrival order from a handler that never blocks,
// and turns the close and error events into io.EOF and an error.
type jsChannel struct {
	dc *webrtc.DataChannel
	v  js.Value

	onMessage, onClose, onError js.Func

	in      *jsQueue
	release sync.Once

	// closedEvent is closed by the close event (or at detach, if the
	// channel was closed already), and shut by Close: closeDelivered
	// waits on both, the relay on the first (clientClosed).
	closedEvent, shut chan struct{}
	closedOnce        sync.Once
}

// detachChannel returns the data channel as a byte stream.
func detachChannel(dc *webrtc.DataChannel) (io.ReadWriteCloser, error) {
	c := &jsChannel{dc: dc, v: dc.JSValue(), in: newJSQueue(maxQueued, errQueueOverflow),
		closedEvent: make(chan struct{}), shut: make(chan struct{})}
	// Chromium delivers ArrayBuffers by default, but Blob is the historical
	// default elsewhere, and reading a Blob is asynchronous.
	c.v.Set("binaryType", "arraybuffer")
	c.onMessage = js.FuncOf(func(_ js.Value, args []js.Value) any {
		c.push(arg0(args).Get("data"))
		return nil
	})
	c.onClose = js.FuncOf(func(js.Value, []js.Value) any {
		c.in.finish(io.EOF)
		c.closedOnce.Do(func() { close(c.closedEvent) })
		return nil
	})
	c.onError = js.FuncOf(func(_ js.Value, args []js.Value) any {
		err := errors.New("data channel error")
		if e := arg0(args).Get("error"); e.Type() == js.TypeObject {
			err = fmt.Errorf("data channel error: %w", jsError(e))
		}
		c.in.finish(err)
		return nil
	})
	c.v.Set("onmessage", c.onMessage)
	c.v.Set("onclose", c.onClose)
	c.v.Set("onerror", c.onError)
	if s := c.v.Get("readyState").String(); s == "closing" || s == "closed" {
		c.in.finish(io.EOF)
		c.closedOnce.Do(func() { close(c.closedEvent) })
	}
	return c, nil
}

// push queues one message. It runs inside a JavaScript event handler and
// must not block.
func (c *jsChannel) push(data js.Value) {
	b, err := messageBytes(data)
	if err != nil {
		c.in.finish(fmt.Errorf("data channel: %w", err))
		return
	}
	c.in.push(b)
}

// Read returns queued bytes; message boundaries are not kept. After the
// channel closed it returns what is left, then io.EOF.
func (c *jsChannel) Read(p []byte) (int, error) {
	return c.in.read(context.Background(), p)
}

// Write sends p as one message. The caller keeps messages within the
// browser's limit and watches BufferedAmount; Chromium throws "send queue
// is full" instead of blocking.
func (c *jsChannel) Write(p []byte) (int, error) {
	end, closed := c.in.state()
	if closed {
		return 0, io.ErrClosedPipe
	}
	if end != nil {
		return 0, fmt.Errorf("data channel closed: %w", end)
	}
	if err := c.dc.Send(p); err != nil {
		return 0, fmt.Errorf("data channel send: %w", err)
	}
	return len(p), nil
}

// closeDelivered starts the channel's closing and waits, at most timeout,
// until the client has received all that was sent on it, or Close is
// called. Closing the PeerConnection right after the last send drops what
// the channel still holds (its bufferedAmount, and what SCTP has not had
// acknowledged): it aborts the association. A data channel's close instead
// sends what is pending and then resets the stream, which the client
// completes only once it has every message before the reset; the close
// event says it did.
func (c *jsChannel) closeDelivered(timeout time.Duration) {
	if _, err := jsCall(c.v, "close"); err != nil {
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.closedEvent:
	case <-c.shut:
	case <-t.C:
	}
}

// clientClosed is closed once the channel closed, by either side.
func (c *jsChannel) clientClosed() <-chan struct{} { return c.closedEvent }

// Close closes the channel and releases the event handlers. It is
// idempotent.
func (c *jsChannel) Close() error {
	var err error
	c.release.Do(func() {
		close(c.shut)
		c.in.close()
		// Unhook before releasing: JavaScript dispatches events one at a
		// time on this thread, so none can reach a released function.
		c.v.Set("onmessage", js.Null())
		c.v.Set("onclose", js.Null())
		c.v.Set("onerror", js.Null())
		c.onMessage.Release()
		c.onClose.Release()
		c.onError.Release()
		err = c.dc.Close()
	})
	return err
}
