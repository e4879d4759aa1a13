package broker

import (
	"sync"
	"testing"
	"time"
)

// TestExpiryQueue checks that entries expire in order, no earlier than one
// hold after they were pushed, that the array is compacted, and that run
// stops when told.
func TestExpiryQueue(t *testing.T) {
	const hold = 30 * time.Millisecond
	q := newExpiryQueue(hold)
	stop := make(chan struct{})
	var mu sync.Mutex
	var got []*waiter
	var late []time.Duration
	pushed := map[*waiter]time.Time{}
	go q.run(stop, func(w *waiter) {
		mu.Lock()
		got = append(got, w)
		late = append(late, time.Since(pushed[w]))
		mu.Unlock()
	})
	const n = 3000
	want := make([]*waiter, n)
	for i := range want {
		want[i] = &waiter{sid: "w"}
		mu.Lock()
		pushed[want[i]] = time.Now()
		mu.Unlock()
		q.push(want[i])
		if i%1000 == 999 {
			time.Sleep(hold / 2) // the queue drains while it fills
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := len(got) == n
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d expired", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	<-q.done
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("entry %d out of order", i)
		}
		if late[i] < hold {
			t.Fatalf("entry %d expired after %v, before the hold", i, late[i])
		}
	}
	// Drained: the array was rewound, not left to grow.
	if w, wait := q.popDue(time.Now()); w != nil || wait != 0 {
		t.Fatal("empty queue returned an entry")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head != 0 || len(q.items) != 0 {
		t.Fatalf("queue not rewound: head %d len %d", q.head, len(q.items))
	}
}
