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
	"os"
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
// connection, since a WebSocket cannot resume after a partial frame. A Read
// started after its deadline has passed returns a timeout without touching
// the connection.
type Conn struct {
	ws            *websocket.Conn
	local, remote net.Addr

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	readMu sync.Mutex // serialises reads; guards msg
	msg    io.Reader  // the message being read, nil between messages
	// readCtx is what every message is read under. The library keeps the
	// context a message began with for all its frames, so a deadline cannot
	// be part of it: readDL cancels it instead, when the deadline in force
	// passes during a Read.
	readCtx    context.Context
	readDL     deadline
	writeMu    sync.Mutex // serialises writes
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
	readCtx, readCancel := context.WithCancelCause(ctx)
	c := &Conn{ws: ws, local: local, remote: remote, ctx: ctx, cancel: cancel, readCtx: readCtx}
	c.readDL.expire = func() { readCancel(os.ErrDeadlineExceeded) }
	// The library closes the connection when the context of a blocked
	// read ends; a Read ending at that same instant would leave it open
	// but unreadable.
	c.readDL.expired = func() { ws.CloseNow() }
	return c
}

// writeContext returns the context of one Write: canceled by Close, and
// bounded by the write deadline. A Write is one whole message, so the
// deadline at its start is the one that governs it.
func (c *Conn) writeContext() (context.Context, context.CancelFunc) {
	if d := c.writeDL.Load(); d != 0 {
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
	if !c.readDL.begin() {
		return 0, timeoutError{os.ErrDeadlineExceeded}
	}
	defer c.readDL.end()
	for {
		if c.msg == nil {
			_, r, err := c.ws.Reader(c.readCtx)
			if err != nil {
				if errors.Is(err, io.EOF) && c.readCtx.Err() == nil {
					// The TCP connection ended between messages without a
					// close frame. Many peers close that way (gorilla's
					// Close does), and no data is lost: a clean end.
					return 0, io.EOF
				}
				return 0, c.mapError(err, c.readCtx)
			}
			c.msg = r
		}
		n, err := c.msg.Read(p)
		if err == io.EOF {
			c.msg = nil
			if n > 0 || len(p) == 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			err = c.mapError(err, c.readCtx)
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
	ctx, cancel := c.writeContext()
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
	if ctx != nil && isDeadline(context.Cause(ctx)) {
		return timeoutError{err}
	}
	if c.ctx.Err() != nil {
		return net.ErrClosed
	}
	return err
}

// isDeadline reports whether cause is the end of a write deadline
// (context.DeadlineExceeded) or of a read deadline (os.ErrDeadlineExceeded).
func isDeadline(cause error) bool {
	return errors.Is(cause, context.DeadlineExceeded) || errors.Is(cause, os.ErrDeadlineExceeded)
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

// SetReadDeadline implements net.Conn. It applies to later Reads and to a
// Read blocked at the time of the call, whichever message they are in.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.readDL.set(t)
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

// deadline is the read deadline of a Conn. It calls expire and then expired
// when the deadline passes while a Read runs (between begin and end); a
// deadline that passes between Reads only makes the next Read return at
// once.
type deadline struct {
	expire  func() // called with mu held, so it must not block
	expired func() // called after expire, without mu

	mu      sync.Mutex
	at      time.Time   // zero: no deadline
	running bool        // a Read is between begin and end
	timer   *time.Timer // created on first use, then reset for each Read
}

// set changes the deadline, re-arming the timer of a running Read.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = t
	if d.running {
		d.arm()
	}
}

// begin starts a Read; it reports false, starting nothing, if the deadline
// has already passed.
func (d *deadline) begin() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.passed() {
		return false
	}
	d.running = true
	d.arm()
	return true
}

// end ends a Read.
func (d *deadline) end() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.running = false
	if d.timer != nil {
		d.timer.Stop()
	}
}

func (d *deadline) passed() bool {
	return !d.at.IsZero() && !time.Now().Before(d.at)
}

func (d *deadline) arm() {
	switch {
	case d.at.IsZero():
		if d.timer != nil {
			d.timer.Stop()
		}
	case d.timer == nil:
		d.timer = time.AfterFunc(time.Until(d.at), d.fire)
	default:
		d.timer.Reset(time.Until(d.at))
	}
}

// fire runs when the timer goes off. The timer may have been armed for an
// earlier deadline or an earlier Read, and stopped too late to keep this
// from running, so it acts only if a Read runs now and the deadline now in
// force has passed.
func (d *deadline) fire() {
	d.mu.Lock()
	fire := d.running && d.passed()
	switch {
	case fire:
		d.expire()
	case d.running:
		// Early by the wall clock (a deadline without a monotonic
		// reading, and the clock stepped back): wait again.
		d.arm()
	}
	d.mu.Unlock()
	if fire {
		d.expired()
	}
}
