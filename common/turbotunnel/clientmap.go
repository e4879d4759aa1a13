package turbotunnel

import (
	"errors"
	"net"
	"sync"
	"time"
)

var errPacketTooLarge = errors.New("turbotunnel: packet larger than MaxPacketSize")

// clientRecord is one address's outgoing queue.
type clientRecord struct {
	queue    chan []byte
	attached int       // transports draining queue; the record never expires while > 0
	lastUsed time.Time // last send, attach or release
}

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

// send queues p for addr and reports whether it was queued (false: full).
func (m *clientMap) send(addr net.Addr, p []byte) bool {
	m.mu.Lock()
	r := m.recordLocked(addr, time.Now())
	m.mu.Unlock()
	select {
	case r.queue <- p:
		return true
	default:
		return false
	}
}

func (m *clientMap) attach(addr net.Addr) (<-chan []byte, func()) {
	m.mu.Lock()
	r := m.recordLocked(addr, time.Now())
	r.attached++
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
