package proxy

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleWatch runs a watch with a 1 s timeout against traffic that lasts
// 2.5 s and then stops. Traffic is a read from the relay, or a fall in the
// data channel's buffered amount, every 50 ms; a stall of the test of up
// to a second is tolerated.
func TestIdleWatch(t *testing.T) {
	const idle = time.Second
	const busy = 2500 * time.Millisecond
	for _, tc := range []struct {
		name string
		// tick runs every 50 ms while the traffic lasts.
		tick     func(w *idleWatch, buffered *atomic.Uint64)
		start    uint64 // buffered amount at the start
		wantBusy bool   // the traffic keeps the connection
	}{
		{"quiet relay, empty channel", func(*idleWatch, *atomic.Uint64) {}, 0, false},
		{"client stopped reading", func(*idleWatch, *atomic.Uint64) {}, 512 << 10, false},
		{"relay sends", func(w *idleWatch, _ *atomic.Uint64) { w.received() }, 0, true},
		// The proxy does not read the relay while the channel is full;
		// the client drains 1 KiB every 50 ms (20 KB/s).
		{"slow client drains", func(_ *idleWatch, b *atomic.Uint64) { b.Add(^uint64(1<<10 - 1)) }, 512 << 10, true},
		// New data raises the amount as much as the client drains.
		{"channel refilled, not drained", func(_ *idleWatch, b *atomic.Uint64) { b.Add(1) }, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buffered atomic.Uint64
			buffered.Store(tc.start)
			expired := make(chan time.Time, 1)
			start := time.Now()
			w := startIdleWatch(idle, buffered.Load, func() { expired <- time.Now() })
			defer w.stop()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			var end time.Time
			for end.IsZero() && time.Since(start) < busy {
				select {
				case at := <-expired:
					end = at
				case <-tick.C:
					tc.tick(w, &buffered)
				}
			}
			stopped := time.Now()
			if tc.wantBusy {
				if !end.IsZero() {
					t.Fatalf("expired after %v of traffic", end.Sub(start))
				}
				select {
				case at := <-expired:
					end = at
				case <-time.After(idle + 5*time.Second):
					t.Fatalf("not expired %v after the traffic stopped", time.Since(stopped))
				}
				if d := end.Sub(stopped); d < idle-idle/idleSamples {
					t.Errorf("expired %v after the traffic stopped, want about %v", d, idle)
				}
				return
			}
			if end.IsZero() {
				t.Fatalf("not expired after %v", time.Since(start))
			}
			if d := end.Sub(start); d < idle {
				t.Errorf("expired after %v, before the %v timeout", d, idle)
			}
		})
	}
}

func TestIdleWatchStop(t *testing.T) {
	expired := make(chan struct{}, 1)
	w := startIdleWatch(100*time.Millisecond, func() uint64 { return 0 }, func() { expired <- struct{}{} })
	w.stop()
	select {
	case <-expired:
		t.Fatal("a stopped watch expired")
	case <-time.After(500 * time.Millisecond):
	}
}
