package turbotunnel

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/kcp-go/v5"
)

const (
	// idleUpdateInterval is the KCP update interval, in milliseconds, of a
	// server session with nothing in flight. A tick costs about a
	// microsecond, so at 100 ms the idle timer costs a tenth of the busy
	// one. Longer would save little more and lengthen what a session pays
	// when it becomes busy (see idlePacer): a 1 s interval raised the
	// server's CPU per GB of uploads by half with 1000 sessions.
	idleUpdateInterval = 100
	// idleSweep is how often a Listener looks at its sessions. A session
	// goes idle at the first sweep after a whole sweep without packets.
	idleSweep = 250 * time.Millisecond
	// ackHoldAfterIdle is how long a session that left the idle interval
	// keeps acknowledging at once: until the update kcp-go scheduled at the
	// idle interval has run, with a margin for a late timer.
	ackHoldAfterIdle = idleUpdateInterval*time.Millisecond + 50*time.Millisecond

	// deepInFlight is how many data segments a session must have in
	// flight for its busy interval to follow its round-trip time.
	deepInFlight = 64
	// updatesPerRTT is how many updates a session with a deep send buffer
	// runs per smoothed round trip (see busyInterval).
	updatesPerRTT = 16
)

// kcpTimer is what the pacer reads and changes in a KCP session.
type kcpTimer interface {
	SetNoDelay(nodelay, interval, resend, nc int)
	SetACKNoDelay(nodelay bool)
	GetSRTT() int32 // smoothed round-trip time, in milliseconds
}

// idlePacer runs a server session's KCP update timer at idleUpdateInterval
// while the session has nothing in flight, or while its client has been
// silent since data was last sent, and at its busy interval otherwise:
// serverUpdateInterval, or longer for a deep send buffer on a long round
// trip (busyInterval).
//
// kcp-go runs every session's update (retransmissions, batched
// acknowledgments) each interval whether the session holds anything or
// not. At 10 ms that is 100 runs a second for every client a bridge has,
// and most clients are idle most of the time: 1000 idle sessions kept an
// eighth of a core busy (server's BenchmarkServerIdleCPU), under half that
// with this pacer.
//
// kcp-go does not tell what a session holds, so the pacer reads the
// packets: the highest data sequence number sent and the una (cumulative
// acknowledgment) of every packet received tell whether the client has all
// the server sent; the highest data sequence number received and the una of
// every packet sent tell whether the server has acknowledged all it
// received. A sweep finds a session idle when both hold, no write is under
// way or unsent, the server's receive window is open, and no packet went
// either way for a whole sweep, which also makes sure KCP has read the last
// acknowledgment under the short interval (KCP derives its retransmission
// timeout from the interval when it reads one).
//
// A write switches back to the short interval before it reaches KCP, and
// so does data from the client. kcp-go cannot bring an update it has
// scheduled forward, so the first update at the short interval may still
// be up to idleUpdateInterval away. Until then (ackHoldAfterIdle), and
// while idle, the session acknowledges received data at once (KCP's "ack
// no delay") instead of on the timer; one acknowledgment per packet costs
// more than one per 10 ms, which is why data also ends the idle interval,
// and the first data packet after the hold ends the hold. A
// retransmission of the first data sent after a quiet spell can also wait
// that long; loss in Snowflake mostly means a proxy went away, and finding
// another takes longer than that.
//
// A session whose client has gone silent with data unacknowledged (the
// client is between proxies, or gone for good) is idle too, once a whole
// sweep has passed without a packet from the client, a new write or new
// data. KCP can then only retransmit, or wait for an acknowledgment to open
// its send window, and the interval delays neither: kcp-go schedules each
// update for the nearest retransmission deadline when that comes sooner,
// and a write blocked on the window waits for the client. Without this,
// every client that vanished in the middle of a download kept its session's
// timer at 100 runs a second until the session timed out (minutes): on a
// bench bridge holding two such sessions and one quiet one, the server spent
// 1.7–2.0% of a core, and 0.7–0.9% with it. Any packet from the client ends
// such a spell before KCP reads it (an acknowledgment may open the window
// for queued data), and so does new data.
type idlePacer struct {
	kcp kcpTimer
	// ramp, if set, is told the cumulative acknowledgment of every packet
	// received (the pacer parses them anyway), and the time at each sweep.
	ramp *sendRamp

	// Written by the packet paths without locking: KCP's output workers
	// call sent, the listener's read loop received.
	activity   atomic.Bool // a packet went either way since the last sweep
	heard      atomic.Bool // a packet came from the client since the last sweep
	fresh      atomic.Bool // new data left since the last sweep
	began      atomic.Bool // a write began since the last sweep
	unsent     atomic.Bool // a write may have data that sent has not seen yet
	windowShut atomic.Bool // the last packet sent advertised no receive window
	sentNext   seqMax      // one past the highest data sequence number sent
	peerUna    seqMax      // the client has every data segment before this
	recvNext   seqMax      // one past the highest data sequence number received
	ackedTo    seqMax      // the server has told the client it has everything before this

	// A copy of idle; whether the session went idle with its client
	// silent (data in flight); and the end of the acknowledgment hold after
	// the idle interval (unix nanoseconds; 0 when there is none): for
	// received to read without locking. KCP's ack-no-delay is on exactly
	// while the session is idle or holdUntil is set.
	idleNow   atomic.Bool
	silentNow atomic.Bool
	holdUntil atomic.Int64

	mu       sync.Mutex
	writing  int  // writes into KCP under way
	idle     bool // the timer runs at idleUpdateInterval
	interval int  // the update interval set last
}

func newIdlePacer(k kcpTimer) *idlePacer {
	return &idlePacer{kcp: k, interval: serverUpdateInterval}
}

// beginWrite restores the short interval before a write into KCP; endWrite
// must follow once the write has returned.
func (p *idlePacer) beginWrite() {
	p.mu.Lock()
	p.writing++
	p.unsent.Store(true)
	p.began.Store(true)
	if p.idle {
		p.setFastLocked(time.Now())
	}
	p.mu.Unlock()
}

func (p *idlePacer) endWrite() {
	p.mu.Lock()
	p.writing--
	p.mu.Unlock()
}

// sent notes a packet KCP sends.
func (p *idlePacer) sent(pkt []byte) {
	p.activity.Store(true)
	first := true
	walkSegments(pkt, func(seg kcpSegment) bool {
		if first {
			// Every segment of a packet carries the same window and una.
			first = false
			p.windowShut.Store(seg.wnd == 0)
			p.ackedTo.raise(seg.una)
		}
		if seg.cmd == kcp.IKCP_CMD_PUSH && p.sentNext.raise(seg.sn+1) {
			// A packet of an earlier write that leaves after a later write
			// began clears this too early; a sweep then still sees the
			// later write's packets as activity, or as unacknowledged.
			p.unsent.Store(false)
			p.fresh.Store(true)
		}
		return true
	})
}

// received notes a packet from the client, before KCP reads it.
func (p *idlePacer) received(pkt []byte) {
	p.activity.Store(true)
	p.heard.Store(true)
	first, data := true, false
	walkSegments(pkt, func(seg kcpSegment) bool {
		if first {
			first = false
			p.peerUna.raise(seg.una)
			if p.ramp != nil {
				p.ramp.acknowledged(seg.una)
			}
		}
		if seg.cmd == kcp.IKCP_CMD_PUSH {
			data = true
			p.recvNext.raise(seg.sn + 1)
		}
		return true
	})
	if !data && !p.silentNow.Load() {
		return
	}
	// Data ends the idle interval, and an acknowledgment hold that is over:
	// while data arrives, acknowledging each packet at once costs more
	// than KCP's batching on its timer. Any packet ends a silent spell.
	if p.idleNow.Load() {
		p.mu.Lock()
		if p.idle {
			p.setFastLocked(time.Now())
		}
		p.mu.Unlock()
	} else if until := p.holdUntil.Load(); until != 0 {
		if now := time.Now(); now.UnixNano() >= until {
			p.mu.Lock()
			p.endHoldLocked(now)
			p.mu.Unlock()
		}
	}
}

// seqMax holds the latest of a series of KCP sequence numbers (which wrap),
// for concurrent use.
type seqMax struct {
	v atomic.Uint64 // seqSeen, if a number was seen, | the number
}

const seqSeen = 1 << 32

// raise records x if it is later than the latest so far, and reports
// whether it was.
func (m *seqMax) raise(x uint32) bool {
	for {
		old := m.v.Load()
		if old&seqSeen != 0 && int32(x-uint32(old)) <= 0 {
			return false
		}
		if m.v.CompareAndSwap(old, seqSeen|uint64(x)) {
			return true
		}
	}
}

// latest returns the latest number, and false if there was none.
func (m *seqMax) latest() (uint32, bool) {
	v := m.v.Load()
	return uint32(v), v&seqSeen != 0
}

// covers reports whether the cumulative acknowledgment in m covers every
// sequence number before next in n: true if n holds none.
func (m *seqMax) covers(n *seqMax) bool {
	next, ok := n.latest()
	if !ok {
		return true
	}
	una, ok := m.latest()
	return ok && int32(una-next) >= 0
}

// sweep moves the session between the intervals and reports whether it is
// idle afterwards.
func (p *idlePacer) sweep(now time.Time) bool {
	if p.ramp != nil {
		p.ramp.expire(now)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	active := p.activity.Swap(false)
	heard, fresh, began := p.heard.Swap(false), p.fresh.Swap(false), p.began.Swap(false)
	// Data the server sent needs the timer (retransmissions), and so do
	// writes and a shut receive window (KCP announces its reopening on the
	// timer). Data it received does not: an idle session acknowledges at
	// once (and data ends the idle interval on arrival).
	//
	// Unless the client is silent: with data in flight, a whole sweep
	// without a packet from it, a new write or new data means KCP can only
	// retransmit, or wait for an acknowledgment to open its window (a
	// write blocked on the window counts as under way).
	inFlight := !p.sentAcked()
	silent := inFlight && !heard && !fresh && !began
	busy := p.writing > 0 || p.unsent.Load() || p.windowShut.Load()
	needsTimer := !silent && (busy || inFlight)
	switch {
	case p.idle && needsTimer:
		// Not expected: writes and arriving packets end the idle interval
		// themselves, and only they make KCP send new data or shut the
		// window.
		p.setFastLocked(now)
	case !p.idle && !needsTimer && (!active || silent) && p.receivedAcked():
		p.kcp.SetNoDelay(-1, idleUpdateInterval, -1, -1)
		p.interval = idleUpdateInterval
		if p.holdUntil.Load() == 0 {
			// Not still on from the last idle spell's hold.
			p.kcp.SetACKNoDelay(true)
		}
		p.idle = true
		p.idleNow.Store(true)
		p.silentNow.Store(silent)
		p.holdUntil.Store(0)
	default:
		p.endHoldLocked(now)
	}
	if !p.idle {
		p.paceLocked()
	}
	return p.idle
}

// paceLocked sets the busy interval for what the session has in flight now.
// A shut receive window keeps the short one: KCP announces its reopening on
// the timer.
func (p *idlePacer) paceLocked() {
	want := serverUpdateInterval
	if p.inFlight() >= deepInFlight && !p.windowShut.Load() {
		want = busyInterval(p.kcp.GetSRTT())
	}
	if want != p.interval {
		p.kcp.SetNoDelay(-1, want, -1, -1)
		p.interval = want
	}
}

// busyInterval returns the update interval, in milliseconds, of a session
// with deepInFlight data segments or more unacknowledged and a smoothed
// round trip of srtt milliseconds.
//
// Every update of a kcp-go session walks its whole send buffer, looking
// for segments due for retransmission, so a session pays per round trip for
// its updates times what it has in flight, and carries what it has in
// flight per round trip: at a fixed interval, the cost per byte grows with
// the round-trip time. When 50 clients shared a 2-core bench machine, the
// bridge's sessions held about 570 segments each over an 850 ms round trip,
// and these walks took 18% of the server's CPU (perf), against 7% with 10
// clients. One update per sixteenth of the round trip bounds that cost per
// byte at what a 160 ms round trip costs at 10 ms.
//
// A longer interval delays nothing that matters to a sending session:
// kcp-go schedules an update for the nearest retransmission deadline when
// that comes sooner, an acknowledgment that advances the send window
// flushes at once, and so does a write. It adds to the retransmission
// timeout (round trip + max(interval, 4 × its variance)) at most a
// sixteenth of the round trip. Acknowledgments of data the server receives
// wait for a flush, which is why a session with little in flight keeps
// the short interval: one that mostly receives sends little.
func busyInterval(srtt int32) int {
	if srtt <= 0 {
		return serverUpdateInterval
	}
	return min(max(int(srtt)/updatesPerRTT, serverUpdateInterval), idleUpdateInterval)
}

// inFlight returns how many data segments the client has not acknowledged
// cumulatively (selective acknowledgments aside).
func (p *idlePacer) inFlight() uint32 {
	next, ok := p.sentNext.latest()
	if !ok {
		return 0
	}
	una, _ := p.peerUna.latest() // none yet: KCP numbers from 0
	if d := int32(next - una); d > 0 {
		return uint32(d)
	}
	return 0
}

// sentAcked reports whether the client has acknowledged all the server sent.
func (p *idlePacer) sentAcked() bool { return p.peerUna.covers(&p.sentNext) }

// receivedAcked reports whether the server has acknowledged all it received.
func (p *idlePacer) receivedAcked() bool { return p.ackedTo.covers(&p.recvNext) }

func (p *idlePacer) setFastLocked(now time.Time) {
	p.kcp.SetNoDelay(-1, serverUpdateInterval, -1, -1)
	p.interval = serverUpdateInterval
	p.idle = false
	p.idleNow.Store(false)
	p.silentNow.Store(false)
	p.holdUntil.Store(now.Add(ackHoldAfterIdle).UnixNano())
}

// endHoldLocked turns immediate acknowledgments off once the hold after
// the idle interval is over.
func (p *idlePacer) endHoldLocked(now time.Time) {
	until := p.holdUntil.Load()
	if p.idle || until == 0 || now.UnixNano() < until {
		return
	}
	p.kcp.SetACKNoDelay(false)
	p.holdUntil.Store(0)
}
