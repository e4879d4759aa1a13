package proxy

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall/js"
)

// jsWebSocketStream is the browser's WebSocketStream to a relay, as a
// relayConn. Unlike a WebSocket, whose message events come whether or not
// anyone reads them, it delivers a message only when asked: the relay
// reader asks only while the proxy's pipe to the client has room, and the
// pipe drains only while the client's data channel holds less than its
// high-water mark (sendGate). So a client slower than the relay holds the
// relay back through the browser's TCP window, with no queue in the page.
type jsWebSocketStream struct {
	v              js.Value // the WebSocketStream
	reader, writer js.Value

	pending chan promiseResult // a reader.read() not yet taken; nil if none
	rest    []byte             // what the last message has left to read

	mu      sync.Mutex // guards failed
	failed  error      // why a write failed
	aborted chan struct{}
	once    sync.Once
}

// hasWebSocketStream reports whether the browser has WebSocketStream
// (Chromium since 124; not Firefox or Safari in 2026).
func hasWebSocketStream() bool {
	return js.Global().Get("WebSocketStream").Type() == js.TypeFunction
}

// dialWebSocketStream opens a WebSocketStream to url and waits until it is
// open, it fails, or ctx is done.
func dialWebSocketStream(ctx context.Context, url string) (*jsWebSocketStream, error) {
	v, err := jsNew(js.Global().Get("WebSocketStream"), url)
	if err != nil {
		return nil, fmt.Errorf("new WebSocketStream: %w", err)
	}
	// A failed or aborted connection rejects closed too; nobody else
	// waits for it.
	v.Get("closed").Call("catch", ignoreRejection())
	info, err := await(ctx, v.Get("opened"), func() { jsCall(v, "close") })
	if err != nil {
		return nil, fmt.Errorf("WebSocketStream did not open: %w", err)
	}
	c := &jsWebSocketStream{v: v, aborted: make(chan struct{})}
	if c.reader, err = jsCall(info.Get("readable"), "getReader"); err == nil {
		c.writer, err = jsCall(info.Get("writable"), "getWriter")
	}
	if err != nil {
		c.abort()
		return nil, fmt.Errorf("WebSocketStream streams: %w", err)
	}
	return c, nil
}

// lost returns nil: the browser holds what the proxy has not read.
func (c *jsWebSocketStream) lost() <-chan error { return nil }

func (c *jsWebSocketStream) read(ctx context.Context, p []byte) (int, error) {
	for len(c.rest) == 0 {
		if err := c.next(ctx); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

// next takes the next message into rest, asking the browser for it if no
// read is pending. A read ctx ended stays pending for the next call.
func (c *jsWebSocketStream) next(ctx context.Context) error {
	if c.pending == nil {
		ch := make(chan promiseResult, 1)
		promise, err := jsCall(c.reader, "read")
		if err != nil {
			return fmt.Errorf("WebSocketStream read: %w", err)
		}
		settle(promise, func(v js.Value, err error) { ch <- promiseResult{v, err} })
		c.pending = ch
	}
	select {
	case r := <-c.pending:
		c.pending = nil
		if r.err != nil {
			return fmt.Errorf("WebSocketStream: %w", r.err)
		}
		if r.v.Get("done").Bool() {
			// The relay closed the connection with a close frame;
			// a failed connection rejects the read instead.
			return io.EOF
		}
		b, err := messageBytes(r.v.Get("value"))
		if err != nil {
			return fmt.Errorf("WebSocketStream: %w", err)
		}
		if len(b) > wsReadLimit {
			return fmt.Errorf("WebSocketStream: message of %d bytes, more than %d", len(b), wsReadLimit)
		}
		c.rest = b
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.aborted:
		return io.ErrClosedPipe
	}
}

// write sends p as one binary message. The browser queues it and returns;
// waitWritable holds the next write until this one settles.
func (c *jsWebSocketStream) write(_ context.Context, p []byte) error {
	select {
	case <-c.aborted:
		return io.ErrClosedPipe
	default:
	}
	c.mu.Lock()
	failed := c.failed
	c.mu.Unlock()
	if failed != nil {
		return failed
	}
	promise, err := jsCall(c.writer, "write", jsBytes(p))
	if err != nil {
		return fmt.Errorf("WebSocketStream write: %w", err)
	}
	settle(promise, func(_ js.Value, err error) {
		if err != nil {
			c.mu.Lock()
			if c.failed == nil {
				c.failed = fmt.Errorf("WebSocketStream write: %w", err)
			}
			c.mu.Unlock()
		}
	})
	return nil
}

// waitWritable waits until the stream wants another write: until the
// browser has settled the last one (its writable stream's high-water mark
// is one message). Holding writes to one at a time, not to wsHighWater as
// over a WebSocket, matters when the relay hangs: the browser keeps a write
// it has begun until the closing handshake times out, more than a minute
// after the abort, and aborting the writer does not release it; a deeper
// queue would keep up to wsHighWater of the client's data alive for as
// long, for every such client. Uploads through a page proxy to a fast relay
// ran as fast either way (48 MB in 1400-byte messages: 2.9–3.4 MB/s against
// 3.0–3.8, four alternating runs).
func (c *jsWebSocketStream) waitWritable(done <-chan struct{}) bool {
	// desiredSize is null once the stream failed: the next write then
	// reports why.
	if size := c.writer.Get("desiredSize"); size.Type() != js.TypeNumber || size.Float() > 0 {
		return true
	}
	ready := make(chan struct{}, 1)
	settle(c.writer.Get("ready"), func(js.Value, error) { ready <- struct{}{} })
	select {
	case <-ready:
		return true
	case <-done:
		return false
	case <-c.aborted:
		return false
	}
}

// abort starts the closing handshake and returns; a read in progress
// returns io.ErrClosedPipe at once.
func (c *jsWebSocketStream) abort() { c.shut(nil) }

// close starts the closing handshake with status 1000 and returns.
func (c *jsWebSocketStream) close() { c.shut(map[string]any{"closeCode": 1000}) }

func (c *jsWebSocketStream) shut(info map[string]any) {
	c.once.Do(func() {
		close(c.aborted)
		if info == nil {
			jsCall(c.v, "close")
		} else {
			jsCall(c.v, "close", info)
		}
		c.cancelRead()
	})
}

// cancelRead settles a read still pending, and with it the callbacks that
// wait for it. The browser settles it only once the closing handshake ends,
// which from a relay that hangs takes its own timeout, over a minute.
// Canceling the reader resolves the read at once as done; the connection is
// already closing, so the cancel changes nothing else.
func (c *jsWebSocketStream) cancelRead() {
	if c.reader.Type() != js.TypeObject {
		return // the dial failed before the reader was made
	}
	if p, err := jsCall(c.reader, "cancel"); err == nil {
		p.Call("catch", ignoreRejection())
	}
}
