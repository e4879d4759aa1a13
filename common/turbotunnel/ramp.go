package turbotunnel

import (
	"sync"
	"sync/atomic"
	"time"
)

const (
	// rampInitialWindow is a new server session's KCP send window, in
	// segments (about 43 KB). It must drain in KCP's first retransmission
	// timeout (200 ms, before any RTT sample) at the slowest rate a proxy
	// is worth using at: 32 segments take 180 ms at 250 KB/s.
	rampInitialWindow = 32
	// rampEndWindow is where the ramp hands the window back to WindowSize.
	// It is above what smux lets a session have in flight (its 4 MiB
	// receive buffer is about 3,000 segments), so the ramp ends without a
	// jump in what may be sent.
	rampEndWindow = 4096
	// rampMaxDuration is how long a ramp lasts at most. It is for a path
	// that does not acknowledge: one that is dead or stalled. The server
	// notices a stalled WebSocket by a write that does not complete (the
	// server's Config.WriteTimeout), which takes more than the trickle of
	// retransmissions of a small window to fill its buffers
	// (TestStalledWebSocket waited in vain without this limit).
	rampMaxDuration = 2 * time.Second
)

// windowSetter is what the ramp changes in a KCP session.
type windowSetter interface {
	SetWindowSize(sndwnd, rcvwnd int)
}

// sendRamp opens a new server session's KCP send window gradually: it
// starts at rampInitialWindow segments and grows by one segment for every
// two the client acknowledges, so by half every round trip.
//
// Without it a new session sends a whole smux stream window (1 MiB) at
// once, and KCP gives every one of those segments the same first
// retransmission timeout, 200 ms, measured from when it left. Behind a
// proxy slower than 5 MB/s the tail of that burst waits longer than that
// in the proxy's queue, and KCP sends it again, which lengthens the queue
// for what follows: a 4 MiB download over a 1 MB/s link took 6.9 s with
// 37% of the segments sent being retransmissions, and 5.0 s with 15%
// behind the ramp (BenchmarkSlowLinkDownload, ideal 4.3 s). Every session
// starts that way, including the one that fetches Tor's directory at
// bootstrap.
//
// The ramp ends at rampEndWindow or after rampMaxDuration, whichever comes
// first.
type sendRamp struct {
	kcp  windowSetter
	over atomic.Bool // the window is back at WindowSize

	mu    sync.Mutex
	wnd   int    // the send window set last
	una   uint32 // the latest cumulative acknowledgment seen
	half  int    // an acknowledged segment not yet counted (0 or 1)
	until time.Time
}

// newSendRamp sets k's send window to rampInitialWindow, until
// rampMaxDuration after now at most.
func newSendRamp(k windowSetter, now time.Time) *sendRamp {
	k.SetWindowSize(rampInitialWindow, 0)
	return &sendRamp{kcp: k, wnd: rampInitialWindow, until: now.Add(rampMaxDuration)}
}

// acknowledged widens the window by half the segments a packet's
// cumulative acknowledgment una covers that earlier ones did not. (kcp-go
// sends an acknowledgment segment only for the last of a run of segments
// received in order, so counting those would undercount.)
//
// Half, not all as in TCP's slow start, because KCP times each segment's
// retransmission from when it left, with a timeout derived from the round
// trips measured so far. A window that doubles every round trip doubles
// the queue behind a slow link each time, faster than those measurements
// follow: over 1 MB/s, doubling retransmitted 20% of what it sent in a
// 4 MiB download (one run), growing by half 13–15% (two runs).
func (r *sendRamp) acknowledged(una uint32) {
	if r.over.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := int32(una - r.una)
	if r.over.Load() || n <= 0 {
		return
	}
	r.una = una
	r.half += int(n)
	grow := r.half / 2
	r.half %= 2
	if grow == 0 {
		return
	}
	r.wnd += grow
	if r.wnd >= rampEndWindow {
		r.endLocked()
		return
	}
	r.kcp.SetWindowSize(r.wnd, 0)
}

// expire ends the ramp if its time is up at now.
func (r *sendRamp) expire(now time.Time) {
	if r.over.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.over.Load() && !now.Before(r.until) {
		r.endLocked()
	}
}

func (r *sendRamp) endLocked() {
	r.over.Store(true)
	r.kcp.SetWindowSize(WindowSize, 0)
}
