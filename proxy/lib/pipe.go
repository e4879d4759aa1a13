package proxy

import "sync"

// pipe is a bounded byte queue between one producer and one consumer
// goroutine. It is what lets the proxy coalesce: the consumer takes
// everything that accumulated while it was busy sending, up to a maximum
// message size, instead of forwarding each small read as its own message.
//
// The producer blocks while the queue holds limit bytes or more, which
// passes back-pressure to the source connection.
type pipe struct {
	mu      sync.Mutex
	cond    sync.Cond // signals data added, data taken, closed or aborted; guards the fields below
	buf     []byte    // queued bytes
	limit   int
	closed  bool // producer finished; the consumer drains what is left
	aborted bool // the connection is being torn down; drop everything
}

func newPipe(limit int) *pipe {
	p := &pipe{limit: limit}
	p.cond.L = &p.mu
	return p
}

// write appends b, blocking while the queue is full. It reports false if
// the pipe was aborted.
func (p *pipe) write(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) >= p.limit && !p.aborted {
		p.cond.Wait()
	}
	if p.aborted {
		return false
	}
	wasEmpty := len(p.buf) == 0
	p.buf = append(p.buf, b...)
	if wasEmpty {
		p.cond.Broadcast()
	}
	return true
}

// closeWrite marks the end of the producer's data.
func (p *pipe) closeWrite() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
}

// abort wakes both sides and makes them stop.
func (p *pipe) abort() {
	p.mu.Lock()
	p.aborted = true
	p.buf = nil
	p.mu.Unlock()
	p.cond.Broadcast()
}

// read waits for data and copies up to len(dst) bytes into dst. It returns
// 0 when the pipe is closed and drained, or aborted.
func (p *pipe) read(dst []byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.closed && !p.aborted {
		p.cond.Wait()
	}
	if p.aborted || len(p.buf) == 0 {
		return 0
	}
	wasFull := len(p.buf) >= p.limit
	n := copy(dst, p.buf)
	// Compact in place: what remains is usually small, and keeping one
	// backing array avoids garbage.
	rest := copy(p.buf, p.buf[n:])
	p.buf = p.buf[:rest]
	if wasFull && len(p.buf) < p.limit {
		p.cond.Broadcast()
	}
	return n
}
