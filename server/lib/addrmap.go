package server

import (
	"sync"

	"github.com/snowflake-go/snowflake/common/turbotunnel"
)

// addrMap remembers the client address announced with each ClientID, in a
// ring of fixed capacity: the newest records overwrite the oldest, so memory
// is bounded whatever clients send. A session looks its address up once,
// when it starts, right after the WebSocket that announced it.
type addrMap struct {
	mu    sync.Mutex // guards the following fields
	index map[turbotunnel.ClientID]int
	ring  []addrRecord
	next  int // slot to overwrite once the ring is full
	cap   int
}

type addrRecord struct {
	id   turbotunnel.ClientID
	addr string
}

func newAddrMap(capacity int) *addrMap {
	return &addrMap{index: make(map[turbotunnel.ClientID]int), cap: capacity}
}

// set records addr for id. A repeated id gets a fresh slot, so an active
// client is not evicted before idle ones.
func (m *addrMap) set(id turbotunnel.ClientID, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := addrRecord{id, addr}
	if len(m.ring) < m.cap {
		m.ring = append(m.ring, rec)
		m.index[id] = len(m.ring) - 1
		return
	}
	old := m.ring[m.next]
	if slot, ok := m.index[old.id]; ok && slot == m.next {
		delete(m.index, old.id)
	}
	m.ring[m.next] = rec
	m.index[id] = m.next
	m.next = (m.next + 1) % m.cap
}

// get returns the address recorded for id, or "".
func (m *addrMap) get(id turbotunnel.ClientID) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if slot, ok := m.index[id]; ok {
		return m.ring[slot].addr
	}
	return ""
}

// len returns the number of ClientIDs with a record.
func (m *addrMap) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.index)
}
