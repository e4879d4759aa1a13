package proxy

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestDCHighWater(t *testing.T) {
	for _, tc := range []struct {
		active int64
		want   uint64
	}{
		{0, 512 << 10}, // a relay counts itself; zero only in tests
		{1, 512 << 10},
		{10, 512 << 10},
		{12, 512 << 10},
		{13, 6 << 20 / 13},
		{50, 6 << 20 / 50},
		{96, 64 << 10},
		{1000, 64 << 10},
		{-1, 512 << 10},
	} {
		if got := dcHighWater(tc.active); got != tc.want {
			t.Errorf("dcHighWater(%d) = %d, want %d", tc.active, got, tc.want)
		}
	}
}

// fakeChannel is a data channel's send buffer that drains only when the
// test says so, firing the low event as pion does: when a release takes
// the amount from above the threshold to at or below it. Only the test
// adds and releases; the gate under test reads the amount and sets the
// threshold from its own goroutine.
type fakeChannel struct {
	buffered  atomic.Uint64
	threshold atomic.Uint64
	onLow     func() // set by newSendGate before the gate runs
}

func (c *fakeChannel) BufferedAmount() uint64                  { return c.buffered.Load() }
func (c *fakeChannel) SetBufferedAmountLowThreshold(th uint64) { c.threshold.Store(th) }
func (c *fakeChannel) OnBufferedAmountLow(f func())            { c.onLow = f }

func (c *fakeChannel) add(n uint64) { c.buffered.Add(n) }

func (c *fakeChannel) release(n uint64) {
	before := c.buffered.Load()
	c.buffered.Store(before - n)
	if th := c.threshold.Load(); before > th && before-n <= th {
		c.onLow()
	}
}

func TestSendGate(t *testing.T) {
	var active atomic.Int64
	active.Store(1)
	dc := &fakeChannel{}
	g := newSendGate(dc, active.Load)
	done := make(chan struct{})

	// Below the mark: no wait.
	dc.add(512 << 10)
	if !g.wait(done) {
		t.Fatal("wait under the high-water mark reported done")
	}

	// Above it: the gate waits for the amount to fall to half the mark,
	// and a low event from an earlier crossing does not release it.
	dc.add(1)
	g.low <- struct{}{}
	returned := make(chan bool)
	go func() { returned <- g.wait(done) }()
	expectBlocked(t, returned)
	if got := dc.threshold.Load(); got != 256<<10 {
		t.Fatalf("low threshold %d, want %d", got, 256<<10)
	}
	dc.release(128 << 10) // still above the threshold
	expectBlocked(t, returned)
	dc.release(128<<10 + 1) // at the threshold: the event fires
	expectReturned(t, returned, true)

	// With 50 clients relayed, the same channel gets a fiftieth of the
	// budget, and the threshold follows.
	active.Store(50)
	high := uint64(6<<20) / 50
	dc.add(high - dc.BufferedAmount())
	if !g.wait(done) {
		t.Fatal("wait at the shared mark reported done")
	}
	dc.add(1)
	go func() { returned <- g.wait(done) }()
	expectBlocked(t, returned)
	if got := dc.threshold.Load(); got != high/2 {
		t.Fatalf("low threshold %d, want %d", got, high/2)
	}
	dc.release(dc.BufferedAmount() - high/2)
	expectReturned(t, returned, true)

	// Teardown ends a wait.
	dc.add(1 << 20)
	go func() { returned <- g.wait(done) }()
	expectBlocked(t, returned)
	close(done)
	expectReturned(t, returned, false)
}

func expectBlocked(t *testing.T, returned <-chan bool) {
	t.Helper()
	select {
	case ok := <-returned:
		t.Fatalf("wait returned %v while the channel held too much", ok)
	case <-time.After(50 * time.Millisecond):
	}
}

func expectReturned(t *testing.T, returned <-chan bool, want bool) {
	t.Helper()
	select {
	case ok := <-returned:
		if ok != want {
			t.Fatalf("wait returned %v, want %v", ok, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return")
	}
}
