package turbotunnel

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5/deadline"
)

// MaxPacketSize is the largest packet the queue conns carry. KCP packets are
// at most [MTU] bytes; the margin matches what upstream clients accept.
const MaxPacketSize = 1500

// QueueSize is the capacity, in packets, of every queue in this package.
// Full queues drop packets rather than grow: KCP retransmits, and memory per
// client stays bounded.
const QueueSize = 512

// OutgoingQueueSize is the capacity, in packets, of each per-client
// outgoing queue of a [QueuePacketConn] (the server's queue towards one
// client). KCP runs without congestion control, so at the start of a
// download the server emits a whole smux stream window (1 MiB, ~770
// packets) at once. With 512 slots the tail of that burst was dropped and
// only recovered by KCP's retransmission timeout, stalling some downloads
// for about a second; 1024 slots hold the whole window. The channel costs
// 24 bytes per slot; packet buffers are held only while queued.
const OutgoingQueueSize = 1024

// packetPool recycles fixed-size packet buffers. Each buffer is a
// *[MaxPacketSize]byte so that Put does not allocate.
type packetPool struct{ p sync.Pool }

func (pp *packetPool) get(n int) []byte {
	if b, ok := pp.p.Get().(*[MaxPacketSize]byte); ok {
		return b[:n]
	}
	return new([MaxPacketSize]byte)[:n]
}

func (pp *packetPool) put(b []byte) {
	if cap(b) == MaxPacketSize {
		pp.p.Put((*[MaxPacketSize]byte)(b[:MaxPacketSize]))
	}
}

type taggedPacket struct {
	p    []byte
	addr net.Addr
}

// QueuePacketConn is the server side's net.PacketConn. Transports push
// received packets in with [QueuePacketConn.QueueIncoming] and take packets
// to send from the per-address queues returned by [QueuePacketConn.Attach];
// KCP uses the ReadFrom and WriteTo side. Addresses are normally ClientIDs.
//
// All methods are safe for concurrent use. After Close, ReadFrom and WriteTo
// return net.ErrClosed.
type QueuePacketConn struct {
	local   net.Addr
	clients *clientMap
	recv    chan taggedPacket
	pool    packetPool
	rd      *deadline.Deadline

	droppedOut atomic.Uint64 // packets WriteTo dropped on full queues

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup // the expiry goroutine
}

// NewQueuePacketConn returns a QueuePacketConn whose LocalAddr is local and
// whose per-address outgoing queues expire after timeout without use (while
// no transport is attached).
func NewQueuePacketConn(local net.Addr, timeout time.Duration) *QueuePacketConn {
	c := &QueuePacketConn{
		local:   local,
		clients: newClientMap(timeout),
		recv:    make(chan taggedPacket, QueueSize),
		rd:      deadline.New(),
		closed:  make(chan struct{}),
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.clients.expireLoop(c.closed, c.pool.put)
	}()
	return c
}

// QueueIncoming copies p into the receive queue as a packet from addr. It
// reports false if the packet was dropped: the queue is full, the conn is
// closed, or p is larger than MaxPacketSize.
func (c *QueuePacketConn) QueueIncoming(p []byte, addr net.Addr) bool {
	if len(p) > MaxPacketSize {
		return false
	}
	select {
	case <-c.closed:
		return false
	default:
	}
	buf := c.pool.get(len(p))
	copy(buf, p)
	select {
	case c.recv <- taggedPacket{buf, addr}:
		return true
	default:
		c.pool.put(buf)
		return false
	}
}

// QueueIncomingWait is QueueIncoming, except that when the receive queue is
// full it waits for room until done is closed (then drops p and reports
// false). A transport reader that waits instead of dropping pushes back on
// its sender, which helps when many clients burst at once: a dropped packet
// costs KCP a retransmission timeout, a delayed one only its queueing time.
func (c *QueuePacketConn) QueueIncomingWait(p []byte, addr net.Addr, done <-chan struct{}) bool {
	if len(p) > MaxPacketSize {
		return false
	}
	buf := c.pool.get(len(p))
	copy(buf, p)
	select {
	case c.recv <- taggedPacket{buf, addr}:
		return true
	default:
	}
	select {
	case c.recv <- taggedPacket{buf, addr}:
		return true
	case <-c.closed:
	case <-done:
	}
	c.pool.put(buf)
	return false
}

// Attach returns the outgoing queue of addr, for a transport that carries
// addr's traffic to drain. The queue does not expire until release is
// called. Several transports may attach to one address; each packet goes to
// one of them. Once drained, a packet may be handed back with Release.
func (c *QueuePacketConn) Attach(addr net.Addr) (queue <-chan []byte, release func()) {
	return c.clients.attach(addr)
}

// Release returns a packet taken from an outgoing queue to the buffer pool.
// The caller must not use p afterwards. Calling it is optional.
func (c *QueuePacketConn) Release(p []byte) { c.pool.put(p) }

// DroppedOutgoing returns the number of packets WriteTo dropped because an
// outgoing queue was full.
func (c *QueuePacketConn) DroppedOutgoing() uint64 { return c.droppedOut.Load() }

// Clients returns the number of addresses with an outgoing queue.
func (c *QueuePacketConn) Clients() int { return c.clients.len() }

// ReadFrom implements net.PacketConn. A packet longer than p is truncated.
func (c *QueuePacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case <-c.closed:
		return 0, nil, net.ErrClosed
	default:
	}
	select {
	case pkt := <-c.recv:
		n := copy(p, pkt.p)
		c.pool.put(pkt.p)
		return n, pkt.addr, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	}
}

// WriteTo implements net.PacketConn: it copies p onto addr's outgoing queue,
// creating the queue if needed. It drops p if the queue is full, or if no
// transport is attached and every data segment of p is queued already (a
// retransmission to a client that is away). It reports len(p) either way,
// as a UDP socket would.
func (c *QueuePacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if len(p) > MaxPacketSize {
		return 0, errPacketTooLarge
	}
	if c.clients.send(addr, p, c.clone, c.pool.put) == sendFull {
		c.droppedOut.Add(1)
	}
	return len(p), nil
}

// clone copies p into a pooled buffer.
func (c *QueuePacketConn) clone(p []byte) []byte {
	buf := c.pool.get(len(p))
	copy(buf, p)
	return buf
}

// Close implements net.PacketConn. It is idempotent.
func (c *QueuePacketConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	c.wg.Wait()
	return nil
}

// Done returns a channel closed when Close has been called.
func (c *QueuePacketConn) Done() <-chan struct{} { return c.closed }

// LocalAddr implements net.PacketConn.
func (c *QueuePacketConn) LocalAddr() net.Addr { return c.local }

// SetDeadline implements net.PacketConn. Only reads can block, so it sets
// the read deadline.
func (c *QueuePacketConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *QueuePacketConn) SetReadDeadline(t time.Time) error { c.rd.Set(t); return nil }

// SetWriteDeadline implements net.PacketConn. Writes never block, so there
// is nothing to time out.
func (c *QueuePacketConn) SetWriteDeadline(t time.Time) error { return nil }
