// Package dataconn adapts a detached WebRTC data channel to a net.Conn: a
// byte stream with flow control on writes, deadlines, and an optional idle
// timeout. Snowflake treats a data channel as a byte stream; message
// boundaries carry no meaning.
package dataconn

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/datachannel"
	"github.com/pion/transport/v5/deadline"
	"github.com/pion/webrtc/v5"
)

// Flow-control thresholds. pion queues writes without limit, so a fast
// writer must wait for the SCTP send buffer to drain below the low mark once
// it passes the high mark, or memory grows and latency with it.
const (
	DefaultHighWater = 1 << 20
	DefaultLowWater  = 256 << 10
)

// maxMessage is the largest message the reader expects in one read; pion's
// default SCTP maximum message size.
const maxMessage = 65536

// Errors returned by Conn.
var (
	// ErrIdle is the close cause when nothing was received for the idle
	// timeout.
	ErrIdle = errors.New("dataconn: no data received within the idle timeout")
)

// Config configures [New].
type Config struct {
	// IdleTimeout closes the conn when no data was received for this long,
	// counted from New. Zero disables it.
	IdleTimeout time.Duration
	// ExplicitLife makes only [Conn.MarkAlive] count as received data,
	// for the idle timeout and for [Conn.Heard], instead of every byte
	// read. Set it when the reader parses the stream: a peer can send
	// bytes that carry nothing (junk, padding), and only the reader can
	// tell them from the data it uses.
	ExplicitLife bool
	// OnClose, if set, runs once after the data channel is closed (for
	// example to close the PeerConnection). It runs on its own goroutine
	// that Close waits for.
	OnClose func()
	// LocalAddr and RemoteAddr are reported by the net.Conn methods; nil
	// gives a placeholder address.
	LocalAddr, RemoteAddr net.Addr
}

// Conn is a net.Conn over one data channel. It is safe for one reader and
// concurrent writers.
type Conn struct {
	dc  *webrtc.DataChannel
	rwc datachannel.ReadWriteCloserDeadliner
	cfg Config

	low    chan struct{} // signalled when the buffered amount falls below the low mark
	done   chan struct{} // closed by Close
	closed sync.Once
	err    error // why the conn closed; written before done is closed

	// writeDeadline bounds Write's wait for the send buffer to drain:
	// pion's data channel ignores write deadlines unless its SCTP blocks
	// writes, which Snowflake's does not, so the wait here is the only
	// place a Write can block.
	writeDeadline *deadline.Deadline
	writeLimit    int // the longest message Write sends (messageLimit)

	lastRecv atomic.Int64 // unix nanoseconds of the last received data (see Config.ExplicitLife)
	heard    atomic.Bool  // data was received at all
	idle     *time.Timer
	onClose  sync.WaitGroup

	readMu  sync.Mutex // guards readBuf, pending
	readBuf []byte
	pending []byte
}

// New wraps an open data channel. The channel must have been created by an
// API whose SettingEngine called DetachDataChannels.
func New(dc *webrtc.DataChannel, cfg Config) (*Conn, error) {
	rwc, err := dc.DetachWithDeadline()
	if err != nil {
		return nil, err
	}
	c := &Conn{dc: dc, rwc: rwc, cfg: cfg, low: make(chan struct{}, 1), done: make(chan struct{}), writeDeadline: deadline.New(),
		writeLimit: messageLimit(dc)}
	dc.SetBufferedAmountLowThreshold(DefaultLowWater)
	dc.OnBufferedAmountLow(func() {
		select {
		case c.low <- struct{}{}:
		default:
		}
	})
	c.lastRecv.Store(time.Now().UnixNano())
	if cfg.IdleTimeout > 0 {
		// Armed by Reset, after c.idle is set: the timer's function
		// reads c.idle, and only what precedes a Reset is ordered
		// before that function runs. Assigned from AfterFunc's result,
		// c.idle raced with the function when nothing else ordered them
		// (no byte received before the timeout).
		c.idle = time.AfterFunc(math.MaxInt64, c.checkIdle)
		c.idle.Reset(cfg.IdleTimeout)
	}
	return c, nil
}

func (c *Conn) checkIdle() {
	since := time.Since(time.Unix(0, c.lastRecv.Load()))
	if since >= c.cfg.IdleTimeout {
		c.closeWith(ErrIdle)
		return
	}
	select {
	case <-c.done:
	default:
		c.idle.Reset(c.cfg.IdleTimeout - since)
	}
}

// Read reads bytes of the incoming stream, across message boundaries.
func (c *Conn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	select {
	case <-c.done:
		return 0, c.closedErr()
	default:
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if len(p) >= maxMessage {
		// Big enough for any message: no intermediate copy.
		n, err := c.rwc.Read(p)
		return c.afterRead(n, err)
	}
	if c.readBuf == nil {
		c.readBuf = make([]byte, maxMessage)
	}
	n, err := c.rwc.Read(c.readBuf)
	if n, err = c.afterRead(n, err); n == 0 {
		return 0, err
	}
	m := copy(p, c.readBuf[:n])
	c.pending = c.readBuf[m:n]
	return m, nil
}

func (c *Conn) afterRead(n int, err error) (int, error) {
	if n > 0 && !c.cfg.ExplicitLife {
		c.MarkAlive()
	}
	if err != nil {
		select {
		case <-c.done:
			err = c.closedErr()
		default:
		}
	}
	return n, err
}

func (c *Conn) closedErr() error {
	if c.err != nil {
		return c.err
	}
	return net.ErrClosed
}

// Write sends p as one message (split if larger than the maximum message
// size), then waits while the send buffer is above the high mark.
func (c *Conn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		// The data channel is closed in the background after the conn
		// closes; until then its Write would still succeed.
		select {
		case <-c.done:
			return written, net.ErrClosed
		default:
		}
		if c.writeDeadline.Err() != nil {
			return written, os.ErrDeadlineExceeded
		}
		chunk := p
		if len(chunk) > c.writeLimit {
			chunk = chunk[:c.writeLimit]
		}
		n, err := c.rwc.Write(chunk)
		written += n
		if err != nil {
			return written, c.writeErr(err)
		}
		p = p[len(chunk):]
		for c.dc.BufferedAmount() > DefaultHighWater {
			select {
			case <-c.low:
			case <-c.done:
				return written, net.ErrClosed
			case <-c.writeDeadline.Done():
				return written, os.ErrDeadlineExceeded
			case <-time.After(time.Second):
				// Recheck: a low event can be missed if it fired
				// before this goroutine started waiting.
			}
		}
	}
	return written, nil
}

// messageLimit returns the longest message Write may send on dc:
// maxMessage, or less if the peer accepts only less. pion refuses a longer
// message outright, and a peer whose SDP announces no max-message-size is
// taken to accept only 65535 bytes, one less than maxMessage. The
// association fixed the limit before the channel opened, so New reads it
// once.
func messageLimit(dc *webrtc.DataChannel) int {
	if t := dc.Transport(); t != nil {
		if m := int(t.GetCapabilities().MaxMessageSize); m > 0 && m < maxMessage {
			return m
		}
	}
	return maxMessage
}

func (c *Conn) writeErr(err error) error {
	select {
	case <-c.done:
		return net.ErrClosed
	default:
		return err
	}
}

// MarkAlive records that data the reader uses was received now; see
// Config.ExplicitLife.
func (c *Conn) MarkAlive() {
	c.lastRecv.Store(time.Now().UnixNano())
	c.heard.Store(true)
}

// Heard reports whether the conn has received data since New (with
// Config.ExplicitLife, whether MarkAlive was called). A client uses it to
// tell a peer that carried traffic from one that accepted and went away,
// or stayed silent.
func (c *Conn) Heard() bool { return c.heard.Load() }

// Done is closed when the conn has been closed, by Close, by the idle
// timeout, or by [Conn.CloseWithError].
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the conn closed (nil while open or after a plain Close).
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Close closes the data channel and runs Config.OnClose. It is idempotent.
func (c *Conn) Close() error {
	c.closeWith(nil)
	c.onClose.Wait()
	return nil
}

// WaitSent waits until the peer has acknowledged everything written (the
// data channel's buffered amount is zero), ctx ends, or the conn closes.
// Closing a data channel discards what it still buffers, so a writer that
// wants its last message delivered waits for it first.
func (c *Conn) WaitSent(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for c.dc.BufferedAmount() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return c.closedErr()
		case <-t.C:
		}
	}
	return nil
}

// CloseWithError closes the conn recording cause, e.g. when the peer
// connection failed. It does not wait for OnClose.
func (c *Conn) CloseWithError(cause error) { c.closeWith(cause) }

func (c *Conn) closeWith(cause error) {
	c.closed.Do(func() {
		c.err = cause
		close(c.done)
		if c.idle != nil {
			c.idle.Stop()
		}
		// A closed stream's Read can wait for the peer's reset; the
		// deadline releases a blocked reader at once.
		c.rwc.SetReadDeadline(time.Unix(1, 0))
		c.rwc.Close()
		c.onClose.Add(1)
		go func() {
			defer c.onClose.Done()
			if c.cfg.OnClose != nil {
				c.cfg.OnClose()
			}
		}()
	})
}

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return addrOr(c.cfg.LocalAddr) }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return addrOr(c.cfg.RemoteAddr) }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.rwc.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn. It bounds the wait for the send
// buffer to drain below the high mark, the only wait in Write.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Set(t)
	return c.rwc.SetWriteDeadline(t)
}

type placeholderAddr struct{}

func (placeholderAddr) Network() string { return "webrtc" }
func (placeholderAddr) String() string  { return "webrtc" }

func addrOr(a net.Addr) net.Addr {
	if a == nil {
		return placeholderAddr{}
	}
	return a
}
