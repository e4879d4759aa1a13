package turbotunnel

import (
	"sync"
	"testing"
	"time"

	"github.com/xtaci/kcp-go/v5"
)

// TestKCPSchedulerRunsOnTime guards the choice of kcp-go version (go.mod).
// Every KCP session reschedules its own update on kcp.SystemTimedSched for
// the nearest of its update interval and its segments' retransmission
// deadlines. kcp-go v5.7.3 to v5.7.5 run a task up to 5 ms before its
// deadline; a session whose deadline is that close then flushes, finds
// nothing due, reschedules for the same deadline and runs again at once,
// spinning until the deadline passes. Every retransmission deadline of
// every session costs those 5 ms of a core: 1000 sessions whose clients
// vanished with data in flight took a whole core of the bridge
// (BenchmarkServerVanishedCPU: 93–107%, against 17–20% with v5.6.24).
//
// The test reschedules a task the way a session does when its nearest
// deadline is 2 ms away, and checks that no run comes before its deadline.
func TestKCPSchedulerRunsOnTime(t *testing.T) {
	const (
		lead   = 2 * time.Millisecond
		period = 60 * time.Millisecond
	)
	var (
		mu       sync.Mutex
		runs     int
		early    time.Duration // the earliest any run came before its deadline
		deadline time.Time
	)
	done := make(chan struct{})
	start := time.Now()
	var task func()
	task = func() {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		runs++
		early = max(early, deadline.Sub(now))
		if now.Sub(start) >= period {
			close(done)
			return
		}
		deadline = now.Add(lead)
		kcp.SystemTimedSched.Put(task, deadline)
	}
	mu.Lock()
	deadline = start.Add(lead)
	kcp.SystemTimedSched.Put(task, deadline)
	mu.Unlock()

	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the task never ran for its whole period")
	}
	mu.Lock()
	defer mu.Unlock()
	// On time, a run every 2 ms or later: at most 31 in 60 ms.
	if limit := int(period/lead) + 1; runs > limit || early > 0 {
		t.Errorf("kcp-go's scheduler ran a task %d times in %v, rescheduled %v ahead each time (want at most %d), the earliest %v before its deadline (want none)",
			runs, period, lead, limit, early)
	}
}
