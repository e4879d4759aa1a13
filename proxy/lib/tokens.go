package proxy

import (
	"context"
	"sync"
)

// tokens counts capacity: one token per client being polled for or served.
// With capacity 0 acquire never blocks but the count is still kept, since
// the broker is told how many clients the proxy has.
type tokens struct {
	mu       sync.Mutex // guards held and wake
	capacity int
	held     int
	wake     chan struct{} // closed and replaced when a token is released
}

func newTokens(capacity int) *tokens {
	return &tokens{capacity: capacity, wake: make(chan struct{})}
}

// acquire takes a token, waiting while all are held.
func (t *tokens) acquire(ctx context.Context) error {
	for {
		t.mu.Lock()
		if t.capacity == 0 || t.held < t.capacity {
			t.held++
			t.mu.Unlock()
			return nil
		}
		wake := t.wake
		t.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release returns a token.
func (t *tokens) release() {
	t.mu.Lock()
	t.held--
	close(t.wake)
	t.wake = make(chan struct{})
	t.mu.Unlock()
}

// count returns the number of tokens held.
func (t *tokens) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.held
}
