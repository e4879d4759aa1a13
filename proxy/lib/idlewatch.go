package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// idleWatch ends a relayed connection on which nothing moves: nothing was
// read from the relay and the client's data channel drained nothing, for
// the idle timeout.
//
// Reads from the relay alone are not enough to tell. The proxy stops
// reading the relay while the data channel is above its high-water mark,
// until it drains to half of it. Behind a client on a link slower than
// about 9 KB/s, that half (256 KiB) takes longer than the default 30 s
// timeout: 52 s at 5 KB/s. So the watch
// also samples the data channel's buffered amount, and a fall since the
// last sample counts as traffic. A client that vanished or stopped reading
// drains nothing, and a silent relay leaves nothing to drain, so both
// still end after the timeout.
type idleWatch struct {
	idle     time.Duration
	buffered func() uint64 // the data channel's buffered amount
	expire   func()        // called once, when the connection is idle

	// Times are durations since start, read from the monotonic clock,
	// so that a step of the wall clock neither cuts nor keeps connections.
	start     time.Time
	lastRecv  atomic.Int64 // the last read from the relay
	mu        sync.Mutex
	timer     *time.Timer
	over      bool          // expired or stopped
	sampled   uint64        // buffered amount at the last check
	lastDrain time.Duration // when a check last saw it fall
}

// idleSamples is how many times per timeout the watch samples the buffered
// amount while the relay is quiet: a slow client must drain something in
// each third of the timeout.
const idleSamples = 3

// startIdleWatch starts watching; the caller stops it with stop.
func startIdleWatch(idle time.Duration, buffered func() uint64, expire func()) *idleWatch {
	w := &idleWatch{idle: idle, buffered: buffered, expire: expire, start: time.Now()}
	w.sampled = buffered()
	w.mu.Lock()
	w.timer = time.AfterFunc(w.nextCheck(idle), w.check)
	w.mu.Unlock()
	return w
}

// received notes a read from the relay.
func (w *idleWatch) received() { w.lastRecv.Store(int64(time.Since(w.start))) }

// stop ends the watch without expiring it.
func (w *idleWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.over = true
	w.timer.Stop()
}

func (w *idleWatch) nextCheck(left time.Duration) time.Duration {
	return min(left, w.idle/idleSamples)
}

func (w *idleWatch) check() {
	w.mu.Lock()
	if w.over {
		w.mu.Unlock()
		return
	}
	now := time.Since(w.start)
	b := w.buffered()
	if b < w.sampled {
		w.lastDrain = now
	}
	w.sampled = b
	last := max(time.Duration(w.lastRecv.Load()), w.lastDrain)
	left := w.idle - (now - last)
	if left > 0 {
		w.timer = time.AfterFunc(w.nextCheck(left), w.check)
		w.mu.Unlock()
		return
	}
	w.over = true
	w.mu.Unlock()
	w.expire()
}
