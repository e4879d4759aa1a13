package broker

import (
	"container/heap"
	"maps"
	"net"
	"slices"
	"sync"

	"github.com/snowflake-go/snowflake/common/nat"
)

// offer is what a matched proxy receives.
type offer struct {
	sdp      string   // the client's offer envelope, byte for byte
	natType  nat.Type // the client's declared NAT type
	relayURL string   // the requested bridge's WebSocket URL
}

// waiter is one proxy poll waiting for a client. It is pushed into a pool
// and leaves it exactly once: popped by a client (take), or withdrawn when
// its hold expires or the broker closes. Whoever removes it answers the
// proxy, in one of two ways:
//
//   - parked (conn != nil): the HTTP connection was taken over from
//     net/http, no goroutine waits; the remover writes the response on conn
//     and closes it. This keeps a held poll down to a socket, this struct
//     and an entry in the expiry queue.
//   - blocking (ch != nil): the handler goroutine waits on ch; a client
//     sends it exactly one offer after popping it.
type waiter struct {
	sid       string
	proxyType string // normalised (see messages.NormalizeProxyType)
	natType   nat.Type
	clients   int
	ch        chan offer // blocking mode: capacity 1, written once by the taker
	conn      net.Conn   // parked mode: the hijacked connection
	keepAlive bool       // parked mode: serve the connection on afterwards
	index     int        // position in its heap; -1 once out of it
	seq       uint64     // arrival order, to break ties FIFO
}

// waiterHeap is a min-heap on (clients, seq).
type waiterHeap []*waiter

func (h waiterHeap) Len() int { return len(h) }
func (h waiterHeap) Less(i, j int) bool {
	if h[i].clients != h[j].clients {
		return h[i].clients < h[j].clients
	}
	return h[i].seq < h[j].seq
}
func (h waiterHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *waiterHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiterHeap) Pop() any {
	old := *h
	n := len(old)
	w := old[n-1]
	old[n-1] = nil
	w.index = -1
	*h = old[:n-1]
	return w
}

// poolKind names one of the two pools.
type poolKind int

const (
	poolRestricted   poolKind = iota // restricted and unknown proxies
	poolUnrestricted                 // proxies that can reach restricted clients
)

func poolFor(t nat.Type) poolKind {
	if t == nat.Unrestricted {
		return poolUnrestricted
	}
	return poolRestricted
}

// clientWait is a client poll that found no proxy and waits for one to
// poll (Config.ClientWait). The add that hands it a proxy also registers
// the match, exactly as take would have.
type clientWait struct {
	natType nat.Type
	got     chan handoff // capacity 1, written once
}

// handoff is a proxy given to a waiting client, with its match.
type handoff struct {
	w *waiter
	m *match
}

// match records a proxy matched with a client until the client's poll ends;
// /answer finds it by the proxy's Sid.
type match struct {
	proxyType string
	answer    chan string // capacity 1; the first answer wins
	// answered is set by the first answer (guarded by pools.mu): any
	// later one is refused, rather than left in answer for nobody once
	// the client has read the first.
	answered bool
}

// pools is the matching engine: two heaps of waiting proxies and the table
// of matches awaiting an answer.
type pools struct {
	mu sync.Mutex
	// The following fields are guarded by mu.
	heaps   [2]waiterHeap
	seq     uint64
	matches map[string]*match // by proxy Sid
	// counts of waiting proxies by normalised type and NAT type, for
	// /debug and the available_proxies gauge.
	counts map[countKey]int
	// clients waiting for a proxy, oldest first. It is empty whenever a
	// heap holds a proxy that one of them could take.
	clients []*clientWait
	// discarded, if set, is called (with mu held, so it must not use
	// the pools) for each parked waiter dropped because its proxy has
	// disconnected: its poll ends there, unanswered.
	discarded func(*waiter)
	// released is set by drainParked: a waiter added after it would
	// never be answered, so add refuses it.
	released bool
}

// countKey is a (proxy type, NAT type) pair.
type countKey struct {
	proxyType string
	natType   nat.Type
}

func newPools() *pools {
	return &pools{matches: map[string]*match{}, counts: map[countKey]int{}}
}

// add puts w in its pool unless the pools already hold limit proxies
// (limit <= 0: no limit) or were drained by Close. It reports whether w
// was added. If a client is
// waiting for a proxy like w, w goes to that client instead of the pool
// (see takeOrWait), and the client then answers w as a taker would.
func (p *pools) add(w *waiter, limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.released {
		return false
	}
	if cw := p.waitingClientLocked(w.natType); cw != nil {
		w.index = -1 // never in a heap: withdraw finds it taken
		cw.got <- handoff{w, p.matchLocked(w)}
		return true
	}
	if limit > 0 && len(p.heaps[0])+len(p.heaps[1]) >= limit {
		return false
	}
	p.seq++
	w.seq = p.seq
	heap.Push(&p.heaps[poolFor(w.natType)], w)
	p.counts[countKey{w.proxyType, w.natType}]++
	return true
}

// removeLocked takes w out of its heap.
func (p *pools) removeLocked(w *waiter) {
	heap.Remove(&p.heaps[poolFor(w.natType)], w.index)
	p.counts[countKey{w.proxyType, w.natType}]--
}

// withdraw removes a waiter whose hold ended. It reports false if a client
// took it first, in which case its offer is already in w.ch.
func (p *pools) withdraw(w *waiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.index < 0 {
		return false
	}
	p.removeLocked(w)
	return true
}

// take pops the least-loaded proxy for a client of the given NAT type and
// registers the match; the caller then delivers o to the waiter. Restricted and unknown clients need
// an unrestricted proxy. Unrestricted clients get a restricted proxy when
// there is one, to save unrestricted proxies for the clients that need them.
func (p *pools) take(clientNAT nat.Type) (*waiter, *match) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.takeLocked(clientNAT)
}

// takeOrWait is take, except that when no proxy fits it enqueues the
// client and returns its clientWait instead: the next fitting proxy to poll
// is handed to it. The caller must end the wait with stopWaiting unless it
// received from got.
func (p *pools) takeOrWait(clientNAT nat.Type) (*waiter, *match, *clientWait) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w, m := p.takeLocked(clientNAT); w != nil {
		return w, m, nil
	}
	cw := &clientWait{natType: clientNAT, got: make(chan handoff, 1)}
	p.clients = append(p.clients, cw)
	return nil, nil, cw
}

// stopWaiting ends cw's wait. If a proxy was handed to cw in the meantime,
// it returns that proxy and its match, which the caller must serve.
func (p *pools) stopWaiting(cw *clientWait) (*waiter, *match) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.clients, cw); i >= 0 {
		p.clients = slices.Delete(p.clients, i, i+1)
		return nil, nil
	}
	h := <-cw.got // removed from the queue only by a handing add
	return h.w, h.m
}

// waitingClientLocked removes and returns the waiting client that a new
// proxy of NAT type proxyNAT should serve, or nil. As in take, unrestricted
// proxies go first to the clients that need them: the oldest restricted or
// unknown client, else the oldest unrestricted one. Proxies of the
// restricted pool can serve only unrestricted clients.
func (p *pools) waitingClientLocked(proxyNAT nat.Type) *clientWait {
	if len(p.clients) == 0 {
		return nil
	}
	i := -1
	if poolFor(proxyNAT) == poolUnrestricted {
		i = slices.IndexFunc(p.clients, func(cw *clientWait) bool { return cw.natType != nat.Unrestricted })
	}
	if i < 0 {
		i = slices.IndexFunc(p.clients, func(cw *clientWait) bool { return cw.natType == nat.Unrestricted })
	}
	if i < 0 {
		return nil
	}
	cw := p.clients[i]
	p.clients = slices.Delete(p.clients, i, i+1)
	return cw
}

func (p *pools) takeLocked(clientNAT nat.Type) (*waiter, *match) {
	order := []poolKind{poolUnrestricted}
	if clientNAT == nat.Unrestricted {
		order = []poolKind{poolRestricted, poolUnrestricted}
	}
	for _, k := range order {
		if w := p.popLiveLocked(k); w != nil {
			return w, p.matchLocked(w)
		}
	}
	return nil, nil
}

// matchLocked registers a match for w, which has left the pools.
func (p *pools) matchLocked(w *waiter) *match {
	m := &match{proxyType: w.proxyType, answer: make(chan string, 1)}
	// A Sid reused by a second concurrent poll replaces the older match;
	// the older client times out.
	p.matches[w.sid] = m
	return m
}

// popLiveLocked pops the top waiter of a pool, discarding parked waiters
// whose proxy has disconnected: matching a client with one would only make
// the client time out.
func (p *pools) popLiveLocked(k poolKind) *waiter {
	for len(p.heaps[k]) > 0 {
		w := p.heaps[k][0]
		p.removeLocked(w)
		if w.conn == nil || connAlive(w.conn) {
			return w
		}
		w.conn.Close()
		if p.discarded != nil {
			p.discarded(w)
		}
	}
	return nil
}

// drainParked removes every parked waiter (at Close) and returns them;
// add refuses waiters from then on.
func (p *pools) drainParked() []*waiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.released = true
	var out []*waiter
	for k := range p.heaps {
		for _, w := range slices.Clone(p.heaps[k]) {
			if w.conn != nil {
				p.removeLocked(w)
				out = append(out, w)
			}
		}
	}
	return out
}

// finish forgets a match once its client poll has ended.
func (p *pools) finish(sid string, m *match) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.matches[sid] == m {
		delete(p.matches, sid)
	}
}

// answer delivers a proxy's answer to the client waiting on sid. It
// returns the match's proxy type ("" if sid is unknown), and false if no
// client is waiting for an answer: sid is unknown, or an earlier answer for
// it was delivered (the first one stands; a second proxy answering the same
// offer cannot be connected to the client).
func (p *pools) answer(sid, answer string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.matches[sid]
	if !ok {
		return "", false
	}
	if m.answered {
		return m.proxyType, false
	}
	m.answered = true
	m.answer <- answer // never blocks: capacity 1, and only the first answer sends
	return m.proxyType, true
}

// snapshot returns the number of waiting proxies per (type, NAT) pair,
// for every pair a proxy has polled with, 0 when none waits now: like
// upstream's gauges, a pair's series stays once it has appeared, so that
// "no proxy waiting" is a value alerts and dashboards see, not a gap. The
// pairs are few: types outside the known ones are counted as unknown.
func (p *pools) snapshot() map[countKey]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.counts)
}

// waitingClients returns the number of clients waiting for a proxy.
func (p *pools) waitingClients() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients)
}

// waiting returns the number of waiting proxies.
func (p *pools) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.heaps[0]) + len(p.heaps[1])
}
