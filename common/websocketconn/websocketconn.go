// Package websocketconn turns a WebSocket into a net.Conn byte stream, the
// form in which Snowflake proxies and the bridge server exchange turbotunnel
// traffic. Message boundaries carry no meaning: each Write sends one binary
// message and Read returns the bytes of binary and text messages alike, as
// upstream peers send either.
//
// It uses github.com/coder/websocket and builds for native targets and for
// GOOS=js (where the browser's WebSocket is underneath).
package websocketconn

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ReadLimit is the largest message accepted. Peers send messages of a few
// KiB (upstream proxies re-chunk to 2 KiB, data-channel messages are at most
// 64 KiB); the library's default of 32 KiB is too small for some of them.
const ReadLimit = 1 << 20

// Addr is the placeholder net.Addr of a conn whose addresses are unknown.
type Addr struct{}

// Network implements net.Addr.
func (Addr) Network() string { return "websocket" }

// String implements net.Addr.
func (Addr) String() string { return "websocket" }

// Conn is a net.Conn over a WebSocket. Read and Write may be called
// concurrently with each other and with Close.
//
// Deadlines are enforced the way coder/websocket enforces contexts: a read
// or write that is still blocked when its deadline passes closes the whole
// connection, since a WebSocket cannot resume after a partial frame.
type Conn struct {
	ws            *websocket.Conn
	local, remote net.Addr

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	readMu     sync.Mutex // guards msg and msgDone; serialises reads
	msg        io.Reader  // the message being read, nil between messages
	msgDone    context.CancelFunc
	writeMu    sync.Mutex // serialises writes
	readDL     atomic.Int64
	writeDL    atomic.Int64
	closeOnce  sync.Once
	closeError error
}

// New returns a net.Conn over ws, with placeholder addresses.
func New(ws *websocket.Conn) net.Conn {
	return NewWithAddrs(ws, Addr{}, Addr{})
}

// NewWithAddrs returns a net.Conn over ws reporting the given addresses.
func NewWithAddrs(ws *websocket.Conn, local, remote net.Addr) *Conn {
	ws.SetReadLimit(ReadLimit)
	ctx, cancel := context.WithCancel(context.Background())
	return &Conn{ws: ws, local: local, remote: remote, ctx: ctx, cancel: cancel}
}

// opContext returns the context of one operation: canceled by Close, and
// bounded by the deadline stored in dl (Unix nanoseconds, 0 = none).
func (c *Conn) opContext(dl *atomic.Int64) (context.Context, context.CancelFunc) {
	if d := dl.Load(); d != 0 {
		return context.WithDeadline(c.ctx, time.Unix(0, d))
	}
	return context.WithCancel(c.ctx)
}

// Read reads bytes from the current message, moving on to the next message
// when it is exhausted. A close by the peer between messages (with a normal
// close frame, or none) reads as io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if c.msg == nil {
			// The context must live as long as the message is read: the
			// library reads later frames of the message under it.
			ctx, cancel := c.opContext(&c.readDL)
			_, r, err := c.ws.Reader(ctx)
			if err != nil {
				cancel()
				if errors.Is(err, io.EOF) && c.ctx.Err() == nil {
					// The TCP connection ended between messages without a
					// close frame. Many peers close that way (gorilla's
					// Close does), and no data is lost: a clean end.
					return 0, io.EOF
				}
				return 0, c.mapError(err, ctx)
			}
			c.msg, c.msgDone = r, cancel
		}
		n, err := c.msg.Read(p)
		if err == io.EOF {
			c.msgDone()
			c.msg, c.msgDone = nil, nil
			if n > 0 || len(p) == 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			err = c.mapError(err, nil)
			if err == io.EOF {
				// Ended inside a message: bytes were lost.
				err = io.ErrUnexpectedEOF
			}
			// The bytes returned with a mid-frame error are not to be
			// trusted: coder/websocket returns a server's partial payload
			// still masked. Passing them on let a truncated frame end in
			// garbage that completed a packet, and KCP has no checksum.
			return 0, err
		}
		return n, nil
	}
}

// Write sends p as one binary message.
func (c *Conn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	ctx, cancel := c.opContext(&c.writeDL)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, p); err != nil {
		return 0, c.mapError(err, ctx)
	}
	return len(p), nil
}

// mapError turns a normal closure into io.EOF, a passed deadline into
// os.ErrDeadlineExceeded, and a local Close into net.ErrClosed.
func (c *Conn) mapError(err error, ctx context.Context) error {
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway, websocket.StatusNoStatusRcvd:
		return io.EOF
	}
	// The deadline is checked first: when it closes the connection, a
	// concurrent reader may call Close before this error is mapped.
	if ctx != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return timeoutError{err}
	}
	if c.ctx.Err() != nil {
		return net.ErrClosed
	}
	return err
}

// timeoutError is a net.Error reporting Timeout, for deadline expiry.
type timeoutError struct{ err error }

func (e timeoutError) Error() string   { return "websocketconn: deadline exceeded: " + e.err.Error() }
func (e timeoutError) Unwrap() error   { return e.err }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }
func (e timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded
}

// Close closes the connection at once, without the WebSocket closing
// handshake: the layers above have their own end-of-session signalling, and
// waiting for a handshake would let a stalled peer hold Close for seconds.
// It is idempotent and unblocks pending Reads and Writes.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.closeError = c.ws.CloseNow()
		if errors.Is(c.closeError, net.ErrClosed) {
			c.closeError = nil
		}
	})
	return c.closeError
}

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn. It applies to reads started after the
// call (and to the rest of a message whose read starts after it).
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.readDL.Store(unixNano(t))
	return nil
}

// SetWriteDeadline implements net.Conn, for writes started after the call.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.writeDL.Store(unixNano(t))
	return nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
