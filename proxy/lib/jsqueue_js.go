package proxy

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall/js"
)

// jsQueue holds the messages a browser event handler received until a
// goroutine reads them. Browsers cannot pause message events, so the
// handler must never block: past limit bytes (none if 0) the queue drops
// what it holds and ends with overflow instead.
type jsQueue struct {
	limit    int
	overflow error

	mu     sync.Mutex // guards the fields below
	queue  [][]byte   // messages not yet read, oldest first
	queued int        // bytes in queue
	end    error      // why no more messages come (io.EOF, an error, overflow); nil while open
	over   bool       // end is overflow: what was queued is gone
	closed bool       // the reader's side closed it
	wake   chan struct{}
	lost   chan error // receives overflow when it happens (see relayConn.lost)
}

func newJSQueue(limit int, overflow error) *jsQueue {
	return &jsQueue{limit: limit, overflow: overflow, wake: make(chan struct{}, 1), lost: make(chan error, 1)}
}

// push queues one message; it never blocks.
func (q *jsQueue) push(b []byte) {
	if len(b) == 0 {
		return
	}
	q.mu.Lock()
	if q.end == nil && !q.closed {
		if q.limit > 0 && q.queued+len(b) > q.limit {
			q.end, q.over = q.overflow, true
			q.queue, q.queued = nil, 0
			// The reader may be blocked elsewhere, for as long
			// as the queue was filling: tell whoever can end
			// the connection. It happens once; lost has room.
			select {
			case q.lost <- q.overflow:
			default:
			}
		} else {
			q.queue = append(q.queue, b)
			q.queued += len(b)
		}
	}
	q.mu.Unlock()
	q.signal()
}

// finish records why no more messages come; the first reason stays.
func (q *jsQueue) finish(err error) {
	q.mu.Lock()
	if q.end == nil {
		q.end = err
	}
	q.mu.Unlock()
	q.signal()
}

// close drops what is queued and makes reads fail with io.ErrClosedPipe.
func (q *jsQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.queue, q.queued = nil, 0
	q.mu.Unlock()
	q.signal()
}

// state returns the reason for the end (nil while open) and whether the
// queue was closed.
func (q *jsQueue) state() (end error, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.end, q.closed
}

func (q *jsQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// read returns queued bytes; message boundaries are not kept. After the end
// it returns what is left, then the reason (at once for an overflow). It
// waits for a message until ctx is done.
func (q *jsQueue) read(ctx context.Context, p []byte) (int, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return 0, io.ErrClosedPipe
		}
		if len(q.queue) > 0 && !q.over {
			n := copy(p, q.queue[0])
			if n == len(q.queue[0]) {
				q.queue[0] = nil
				q.queue = q.queue[1:]
			} else {
				q.queue[0] = q.queue[0][n:]
			}
			q.queued -= n
			q.mu.Unlock()
			return n, nil
		}
		if q.end != nil {
			err := q.end
			q.mu.Unlock()
			return 0, err
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// messageBytes returns the bytes of a message event's data: an ArrayBuffer
// (binaryType "arraybuffer"), or a string for a text message.
func messageBytes(data js.Value) ([]byte, error) {
	switch {
	case data.Type() == js.TypeString:
		return []byte(data.String()), nil
	case data.InstanceOf(js.Global().Get("ArrayBuffer")):
		u8 := js.Global().Get("Uint8Array").New(data)
		b := make([]byte, u8.Get("byteLength").Int())
		js.CopyBytesToGo(b, u8)
		return b, nil
	default:
		return nil, errors.New("unexpected message type")
	}
}
