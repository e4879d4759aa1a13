package turbotunnel

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/xtaci/kcp-go/v5"
)

var errPacketTooLarge = errors.New("turbotunnel: packet larger than MaxPacketSize")

// clientRecord is one address's outgoing queue.
type clientRecord struct {
	queue    chan []byte
	attached int       // transports draining queue; the record never expires while > 0
	lastUsed time.Time // last send, attach or release

	// held names the KCP data segments queued while no transport was
	// attached (nil until the first). Nothing drains the queue then, and
	// KCP keeps resending what its client has not acknowledged, every
	// retransmission timeout (one RTO longer each try). Those copies would
	// only pile up behind the first, which is still queued for the
	// client's return: the queue of a client that vanished with 64 KiB
	// unread filled with up to 1024 packets (1.4 MB) within seconds and
	// stayed full for as long as its session lived (minutes), since every
	// send keeps a queue from expiring.
	held map[segmentID]struct{}
}

// segmentID names a KCP data segment.
type segmentID struct{ conv, sn uint32 }

// sendResult is what became of a packet given to clientMap.send.
type sendResult int

const (
	sendQueued sendResult = iota
	// sendFull: dropped, the queue was full.
	sendFull
	// sendDuplicate: dropped, no transport is attached and every data
	// segment of the packet is queued already.
	sendDuplicate
)

// clientMap holds the outgoing queue of every address that was sent to or
// attached recently. Queues of unattached addresses expire after timeout
// without use, so a client that went away costs nothing after a while.
type clientMap struct {
	timeout time.Duration

	mu      sync.Mutex // guards clients
	clients map[net.Addr]*clientRecord
}

func newClientMap(timeout time.Duration) *clientMap {
	return &clientMap{timeout: timeout, clients: make(map[net.Addr]*clientRecord)}
}

// recordLocked returns addr's record, creating it. Caller holds m.mu.
func (m *clientMap) recordLocked(addr net.Addr, now time.Time) *clientRecord {
	r := m.clients[addr]
	if r == nil {
		r = &clientRecord{queue: make(chan []byte, OutgoingQueueSize)}
		m.clients[addr] = r
	}
	r.lastUsed = now
	return r
}

// send queues a copy of p for addr, made by clone, unless the queue is full
// or holds p's data already (see clientRecord.held). When the copy is not
// queued it is handed to free.
func (m *clientMap) send(addr net.Addr, p []byte, clone func([]byte) []byte, free func([]byte)) sendResult {
	m.mu.Lock()
	r := m.recordLocked(addr, time.Now())
	detached := r.attached == 0
	if detached && r.holdsAll(p) {
		m.mu.Unlock()
		return sendDuplicate
	}
	m.mu.Unlock()
	buf := clone(p)
	select {
	case r.queue <- buf:
	default:
		free(buf)
		return sendFull
	}
	if detached {
		m.mu.Lock()
		if r.attached == 0 {
			r.hold(p)
		}
		m.mu.Unlock()
	}
	return sendQueued
}

// holdsAll reports whether p is a KCP packet of data segments only, all of
// them in r.held. Anything else (acknowledgments, window probes, what does
// not parse) is never taken for a copy. Caller holds the map's lock.
func (r *clientRecord) holdsAll(p []byte) bool {
	if r.held == nil || len(p) == 0 {
		return false
	}
	return walkSegments(p, func(seg kcpSegment) bool {
		if seg.cmd != kcp.IKCP_CMD_PUSH {
			return false
		}
		_, ok := r.held[segmentID{seg.conv, seg.sn}]
		return ok
	})
}

// hold adds the data segments of p, just queued, to r.held. Caller holds
// the map's lock.
func (r *clientRecord) hold(p []byte) {
	walkSegments(p, func(seg kcpSegment) bool {
		if seg.cmd == kcp.IKCP_CMD_PUSH {
			if r.held == nil {
				r.held = make(map[segmentID]struct{})
			}
			r.held[segmentID{seg.conv, seg.sn}] = struct{}{}
		}
		return true
	})
}

func (m *clientMap) attach(addr net.Addr) (<-chan []byte, func()) {
	m.mu.Lock()
	r := m.recordLocked(addr, time.Now())
	r.attached++
	// The transport drains what was held; what KCP sends from now on is
	// new to the queue.
	r.held = nil
	m.mu.Unlock()
	var once sync.Once
	return r.queue, func() {
		once.Do(func() {
			m.mu.Lock()
			r.attached--
			r.lastUsed = time.Now()
			m.mu.Unlock()
		})
	}
}

func (m *clientMap) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.clients)
}

// expire removes unattached records idle since before now-timeout and hands
// their queued packets to free.
func (m *clientMap) expire(now time.Time, free func([]byte)) {
	var dead []*clientRecord
	m.mu.Lock()
	for addr, r := range m.clients {
		if r.attached == 0 && now.Sub(r.lastUsed) >= m.timeout {
			delete(m.clients, addr)
			dead = append(dead, r)
		}
	}
	m.mu.Unlock()
	// A racing send may still put a packet on a dead queue after it was
	// removed; that packet is simply garbage-collected with the queue.
	for _, r := range dead {
		for drained := false; !drained; {
			select {
			case p := <-r.queue:
				free(p)
			default:
				drained = true
			}
		}
	}
}

// expireLoop runs expire periodically until done is closed.
func (m *clientMap) expireLoop(done <-chan struct{}, free func([]byte)) {
	tick := time.NewTicker(max(m.timeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			m.expire(now, free)
		}
	}
}
