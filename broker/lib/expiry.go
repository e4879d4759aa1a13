package broker

import (
	"sync"
	"time"
)

// expiryQueue ends the holds of parked proxy polls. Every hold lasts the
// same Config.ProxyPollTimeout, so polls expire in the order they were
// parked: a FIFO is already sorted by deadline, and one goroutine with one
// timer serves every parked poll, instead of a runtime timer per poll.
// Polls that a client took stay queued until their deadline and are then
// skipped (withdraw fails), which costs less than removing them.
type expiryQueue struct {
	hold time.Duration

	mu sync.Mutex
	// items[head:] are pending, oldest first; guarded by mu.
	items []expiry
	head  int
	// wake is signalled when the queue goes from empty to non-empty.
	wake chan struct{}
	done chan struct{} // closed when run returns
}

type expiry struct {
	w  *waiter
	at time.Time
}

func newExpiryQueue(hold time.Duration) *expiryQueue {
	return &expiryQueue{hold: hold, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues w to expire one hold from now. The deadline is taken under
// the lock, so the queue stays sorted.
func (q *expiryQueue) push(w *waiter) {
	q.mu.Lock()
	wasEmpty := q.head == len(q.items)
	q.items = append(q.items, expiry{w, time.Now().Add(q.hold)})
	q.mu.Unlock()
	if wasEmpty {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// popDue removes and returns the oldest entry if its deadline has passed
// at now; otherwise it returns the time to wait (0 if the queue is empty).
func (q *expiryQueue) popDue(now time.Time) (*waiter, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		// Empty: reuse the array from the start.
		q.items, q.head = q.items[:0], 0
		return nil, 0
	}
	e := q.items[q.head]
	if d := e.at.Sub(now); d > 0 {
		return nil, d
	}
	q.items[q.head] = expiry{}
	q.head++
	// Reclaim the consumed front once it is half the array, so the
	// array is bounded by twice the polls parked in one hold.
	if q.head > 1024 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return e.w, 0
}

// run calls expire for each entry at its deadline until stop is closed.
func (q *expiryQueue) run(stop <-chan struct{}, expire func(*waiter)) {
	defer close(q.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		w, wait := q.popDue(time.Now())
		if w != nil {
			expire(w)
			continue
		}
		var tc <-chan time.Time
		if wait > 0 {
			t.Reset(wait)
			tc = t.C
		}
		select {
		case <-stop:
			t.Stop()
			return
		case <-q.wake:
		case <-tc:
		}
		t.Stop()
	}
}
