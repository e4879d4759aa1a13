package turbotunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5/deadline"
	"github.com/xtaci/kcp-go/v5"

	"github.com/snowflake-go/snowflake/common/encapsulation"
)

// DialFunc obtains a new transport to the server (for Snowflake: a
// rendezvous and a WebRTC data channel to a fresh proxy).
type DialFunc func(ctx context.Context) (net.Conn, error)

// Redial back-off: how long to wait after a failed dial before the next.
// A transport that lasts less than minRedialDelay counts as failed.
const (
	minRedialDelay = 1 * time.Second
	maxRedialDelay = 10 * time.Second
)

// RedialPacketConn is the client side's net.PacketConn. It writes the
// preamble (Token and ClientID) at the start of every transport it dials,
// then packets framed with package encapsulation, several per Write when
// they are queued together; it reads framed packets back. When the current
// transport fails, it dials another (same ClientID) and carries on, so KCP
// above never notices more than packet loss. Outgoing packets are queued
// meanwhile, up to QueueSize; beyond that they are dropped. Incoming packets
// wait in a queue of QueueSize for KCP to read them; when it is full the
// transport is not read, which slows the sender instead of losing packets.
//
// ReadFrom reports [ServerAddr] as the source; WriteTo ignores its address.
// After Close, ReadFrom and WriteTo return net.ErrClosed.
type RedialPacketConn struct {
	id     ClientID
	dial   DialFunc
	logger *slog.Logger

	send chan []byte
	recv chan inbound
	pool packetPool
	rd   *deadline.Deadline

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	carrying  atomic.Bool   // a transport is connected
	carried   atomic.Uint64 // transports connected so far
	closing   chan struct{} // closed by Close: write what is queued, then stop
	flushed   chan struct{} // closed by the write loop once it has
	flushOnce sync.Once
	closeOnce sync.Once
}

// closeFlushTimeout bounds how long Close spends writing what is still
// queued to the current transport. The last packets KCP sends before a
// session closes carry the FINs of its streams; they tell the server that
// the client is done, so it can free the session at once.
const closeFlushTimeout = 500 * time.Millisecond

// NewRedialPacketConn starts dialling with dial at once and returns the
// conn. logger may be nil.
func NewRedialPacketConn(id ClientID, dial DialFunc, logger *slog.Logger) *RedialPacketConn {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &RedialPacketConn{
		id:      id,
		dial:    dial,
		rd:      deadline.New(),
		logger:  logger.With("component", "turbotunnel", "clientid", id.String()),
		send:    make(chan []byte, QueueSize),
		recv:    make(chan inbound, QueueSize),
		ctx:     ctx,
		cancel:  cancel,
		closing: make(chan struct{}),
		flushed: make(chan struct{}),
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run()
	}()
	return c
}

// run dials transports one after another until the conn is closed.
//
// A transport that ends within minRedialDelay of being dialled (a proxy
// that hangs up at once, or sends garbage) counts as a failed dial too,
// except the first of a row of them, which is replaced at once like any
// other; otherwise a dial that keeps succeeding with such transports would
// be repeated in a busy loop.
func (c *RedialPacketConn) run() {
	delay := minRedialDelay
	short := 0 // transports in a row that ended within minRedialDelay
	for c.ctx.Err() == nil {
		select {
		case <-c.closing:
			return // no new transport for a conn being closed
		default:
		}
		conn, err := c.dial(c.ctx)
		if err == nil {
			start := time.Now()
			err = c.carry(conn)
			lasted := time.Since(start)
			c.logger.Info("transport ended", "err", err, "duration", lasted.Round(time.Millisecond))
			if lasted >= minRedialDelay {
				short = 0
				delay = minRedialDelay
				continue
			}
			if short++; short == 1 {
				continue
			}
		}
		if c.ctx.Err() != nil {
			return
		}
		c.logger.Warn("dial failed or transport ended at once; retrying", "err", err, "delay", delay)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRedialDelay)
	}
}

// carry moves packets over one transport until it fails or the conn is
// closed, then closes the transport.
func (c *RedialPacketConn) carry(conn net.Conn) error {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	// Closing the transport is what unblocks its reader and writer.
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		conn.Close()
	}()

	c.carried.Add(1)
	c.carrying.Store(true)
	defer c.carrying.Store(false)
	readErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		readErr <- c.readLoop(conn)
		cancel()
	}()
	err := c.writeLoop(ctx, conn)
	cancel()
	if err == nil {
		err = <-readErr
	}
	return err
}

func (c *RedialPacketConn) readLoop(conn net.Conn) error {
	r := bufio.NewReaderSize(conn, 32*1024)
	buf := make([]byte, MaxPacketSize)
	life, _ := conn.(lifeMarker)
	for {
		n, err := encapsulation.ReadData(r, buf)
		var tooLong *encapsulation.ErrTooLong
		if errors.As(err, &tooLong) {
			continue // not a KCP packet of ours; skip it, the stream is still aligned
		}
		if err != nil {
			if err == io.EOF {
				return errors.New("turbotunnel: transport closed by peer")
			}
			return fmt.Errorf("turbotunnel: read: %w", err)
		}
		if life != nil && isKCPPacket(buf[:n]) {
			life.MarkAlive()
		}
		p := c.pool.get(n)
		copy(p, buf[:n])
		// Wait for KCP rather than drop: KCP is the only consumer, and
		// while this reader waits, flow control slows the sender (the
		// server) down, whereas a drop costs a retransmission timeout.
		select {
		case c.recv <- inbound{p, r.Buffered() == 0}:
		case <-c.ctx.Done():
			c.pool.put(p)
			return net.ErrClosed
		}
	}
}

// writeLoop writes the preamble, then batches of queued packets. A packet
// taken from the queue but not written when the transport fails is lost;
// KCP retransmits it.
func (c *RedialPacketConn) writeLoop(ctx context.Context, conn net.Conn) error {
	if _, err := conn.Write(AppendPreamble(nil, c.id)); err != nil {
		return fmt.Errorf("turbotunnel: write preamble: %w", err)
	}
	bw := encapsulation.NewBatchWriter(conn)
	for {
		var p []byte
		select {
		case <-ctx.Done():
			return nil
		case <-c.closing:
			// Everything queued goes out in one batch.
			p, ok := c.queued()
			err := c.writeBatch(bw, p, ok, math.MaxInt)
			if w, ok := conn.(sentWaiter); ok && err == nil {
				wctx, cancel := context.WithTimeout(ctx, closeFlushTimeout)
				w.WaitSent(wctx)
				cancel()
			}
			c.flushOnce.Do(func() { close(c.flushed) })
			if err != nil {
				return err
			}
			// Keep the transport until Close cancels: the packets
			// just written may still be on their way.
			<-ctx.Done()
			return nil
		case p = <-c.send:
		}
		// Batch what is queued, but never wait for more. The server's
		// writer holds a batch of bare acknowledgments for a moment
		// ([AckHold]); the client's are mostly those that end a burst of
		// a download (see kcpPacketConn), which nothing follows to carry
		// them, and holding them would cost a wake-up per burst.
		if err := c.writeBatch(bw, p, true, encapsulation.DefaultBatchSize); err != nil {
			return err
		}
	}
}

// writeBatch writes p, if ok, and then packets already in the send queue,
// without waiting for more, until limit bytes are buffered or the queue is
// empty; then it flushes bw.
func (c *RedialPacketConn) writeBatch(bw *encapsulation.BatchWriter, p []byte, ok bool, limit int) error {
	for ; ok; p, ok = c.queued() {
		_, err := bw.WriteData(p) // only Flush writes, so this fails only on an oversized packet
		c.pool.put(p)
		if err != nil {
			return fmt.Errorf("turbotunnel: write: %w", err)
		}
		if bw.Buffered() >= limit {
			break
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("turbotunnel: write: %w", err)
	}
	return nil
}

// queued returns a packet waiting in the send queue, if there is one.
func (c *RedialPacketConn) queued() ([]byte, bool) {
	select {
	case p := <-c.send:
		return p, true
	default:
		return nil, false
	}
}

// sentWaiter is a transport that can wait until what was written has
// reached the peer: a data channel, whose close discards what it still
// buffers (package dataconn).
type sentWaiter interface {
	WaitSent(context.Context) error
}

// lifeMarker is a transport that closes itself after a spell without life
// (package dataconn's idle timeout), and leaves it to its reader to say
// what counts as life: its bytes could be anything a proxy sends, and only
// the reader can tell a packet of the session from junk.
type lifeMarker interface {
	MarkAlive()
}

// isKCPPacket reports whether p is shaped like a packet of KCP: one or more
// whole segments, each with a command KCP knows. Everything a bridge sends
// is (data, acknowledgments, window probes; smux's keep-alives ride in
// data), so a transport that delivers nothing of the kind for the idle
// timeout carries no session, whatever else it delivers. This checks shape
// only: the conversation number is not ours to check here, and a proxy
// that forges KCP can keep itself alive anyway.
func isKCPPacket(p []byte) bool {
	return len(p) > 0 && walkSegments(p, func(seg kcpSegment) bool {
		switch seg.cmd {
		case kcp.IKCP_CMD_PUSH, kcp.IKCP_CMD_ACK, kcp.IKCP_CMD_WASK, kcp.IKCP_CMD_WINS:
			return true
		}
		return false
	})
}

// inbound is a packet read from the transport. burstEnd says that nothing
// the transport had delivered was left unread behind it.
type inbound struct {
	p        []byte
	burstEnd bool
}

// ReadFrom implements net.PacketConn.
func (c *RedialPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, _, err := c.readBurst(p)
	if err != nil {
		return 0, nil, err
	}
	return n, ServerAddr{}, nil
}

// readBurst reads the next packet into p, and reports whether it is the
// last of a burst: the last one the transport had delivered and no later
// one is waiting.
func (c *RedialPacketConn) readBurst(p []byte) (n int, last bool, err error) {
	if c.ctx.Err() != nil {
		return 0, false, net.ErrClosed
	}
	select {
	case in := <-c.recv:
		n := copy(p, in.p)
		c.pool.put(in.p)
		return n, in.burstEnd && len(c.recv) == 0, nil
	case <-c.ctx.Done():
		return 0, false, net.ErrClosed
	case <-c.rd.Done():
		return 0, false, os.ErrDeadlineExceeded
	}
}

// WriteTo implements net.PacketConn. It queues p (dropping it if the queue
// is full) and never blocks.
func (c *RedialPacketConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	if c.ctx.Err() != nil {
		return 0, net.ErrClosed
	}
	if len(p) > MaxPacketSize {
		return 0, errPacketTooLarge
	}
	buf := c.pool.get(len(p))
	copy(buf, p)
	select {
	case c.send <- buf:
	default:
		c.pool.put(buf)
	}
	return len(p), nil
}

// Close writes the packets still queued to the current transport, if there
// is one (waiting up to closeFlushTimeout), stops dialling, closes the
// transport and waits for the conn's goroutines. It is idempotent.
func (c *RedialPacketConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		if c.carrying.Load() {
			t := time.NewTimer(closeFlushTimeout)
			select {
			case <-c.flushed:
			case <-t.C:
			}
			t.Stop()
		}
		c.cancel()
	})
	c.wg.Wait()
	return nil
}

// waiting reports whether no transport is connected, and how many were
// before: the same count means the same wait.
func (c *RedialPacketConn) waiting() (carried uint64, ok bool) {
	if c.carrying.Load() {
		return 0, false
	}
	return c.carried.Load(), true
}

// ClientID returns the conn's ClientID.
func (c *RedialPacketConn) ClientID() ClientID { return c.id }

// LocalAddr implements net.PacketConn: the ClientID.
func (c *RedialPacketConn) LocalAddr() net.Addr { return c.id }

// SetDeadline implements net.PacketConn; only reads can block.
func (c *RedialPacketConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *RedialPacketConn) SetReadDeadline(t time.Time) error { c.rd.Set(t); return nil }

// SetWriteDeadline implements net.PacketConn; writes never block.
func (c *RedialPacketConn) SetWriteDeadline(t time.Time) error { return nil }
