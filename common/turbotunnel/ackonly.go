package turbotunnel

import (
	"encoding/binary"
	"time"

	"github.com/xtaci/kcp-go/v5"
)

// AckHold is how long a batch of outgoing packets that holds only KCP
// acknowledgments waits for another packet before it is sent.
//
// KCP acknowledges at once whenever a packet also acknowledges its own
// data, which in request–reply traffic is every request and every reply.
// The reply or the next request usually follows within a fraction of a
// millisecond; sent apart, the acknowledgment costs every hop (data
// channel, proxy, WebSocket, the peer) a packet and a wake-up, and the data
// channel an SCTP acknowledgment back, while the data it precedes is on its
// way. Waiting only delays the peer's round-trip estimate by at most this
// much, which is small against real paths and KCP's 100 ms minimum RTO.
const AckHold = time.Millisecond

// IsAckOnly reports whether the KCP packet p holds only acknowledgment
// segments. A packet that does not parse is not ack-only, so a sender never
// holds back something it does not understand.
func IsAckOnly(p []byte) bool {
	return len(p) >= kcp.IKCP_OVERHEAD && walkSegments(p, func(seg kcpSegment) bool {
		return seg.cmd == kcp.IKCP_CMD_ACK
	})
}

// kcpSegment is what the packet walkers read of one KCP segment: header
// fields (wire-protocol.md §5.4) and the payload.
type kcpSegment struct {
	conv    uint32 // conversation: the KCP session
	cmd     byte
	wnd     uint16 // the sender's free receive window, in segments
	sn      uint32 // sequence number (of data; acknowledged sequence number in an ack)
	una     uint32 // the sender has received every data segment before this
	payload []byte
}

// walkSegments calls f with each segment of the KCP packet p, in order,
// until f returns false. A packet is a run of segments, each a
// kcp.IKCP_OVERHEAD-byte header (conversation at bytes 0–3, command at 4,
// window 6–7, sequence number 12–15, una 16–19, payload length 20–23)
// followed by the payload.
// walkSegments reports whether p parsed to its end and f returned true for
// every segment.
func walkSegments(p []byte, f func(seg kcpSegment) bool) bool {
	for len(p) > 0 {
		if len(p) < kcp.IKCP_OVERHEAD {
			return false
		}
		n := binary.LittleEndian.Uint32(p[20:24])
		if uint64(n) > uint64(len(p)-kcp.IKCP_OVERHEAD) {
			return false
		}
		seg := kcpSegment{
			conv:    binary.LittleEndian.Uint32(p[0:4]),
			cmd:     p[4],
			wnd:     binary.LittleEndian.Uint16(p[6:8]),
			sn:      binary.LittleEndian.Uint32(p[12:16]),
			una:     binary.LittleEndian.Uint32(p[16:20]),
			payload: p[kcp.IKCP_OVERHEAD : kcp.IKCP_OVERHEAD+int(n)],
		}
		if !f(seg) {
			return false
		}
		p = p[kcp.IKCP_OVERHEAD+int(n):]
	}
	return true
}

// Gatherer collects queued packets into one batch for a writer goroutine,
// holding a batch of acknowledgments alone for a moment ([AckHold] in the
// server's WebSocket writer). One Gatherer serves one writer.
type Gatherer struct {
	timer *time.Timer
	wait  time.Duration
	hold  bool // the batch so far holds only acknowledgments and has not waited
}

// NewGatherer returns a Gatherer that holds acknowledgment-only batches for
// up to wait. Stop releases its timer.
func NewGatherer(wait time.Duration) *Gatherer {
	t := time.NewTimer(wait)
	t.Stop()
	return &Gatherer{timer: t, wait: wait}
}

// Begin starts a batch whose first packet is p.
func (g *Gatherer) Begin(p []byte) { g.hold = IsAckOnly(p) }

// More returns another packet for the batch: one already queued or, while
// the batch holds only acknowledgments, one that arrives within the wait
// (waited for once per batch). It reports false when the batch should be
// sent, or done was closed.
func (g *Gatherer) More(queue <-chan []byte, done <-chan struct{}) ([]byte, bool) {
	select {
	case p := <-queue:
		g.hold = g.hold && IsAckOnly(p)
		return p, true
	default:
	}
	if !g.hold {
		return nil, false
	}
	g.hold = false
	g.timer.Reset(g.wait)
	select {
	case p := <-queue:
		g.timer.Stop()
		return p, true
	case <-g.timer.C:
		return nil, false
	case <-done:
		g.timer.Stop()
		return nil, false
	}
}

// Stop releases the timer.
func (g *Gatherer) Stop() { g.timer.Stop() }

// smux frame header (wire-protocol.md §5.5): version, command, length
// (little-endian uint16), stream id.
const (
	smuxHeaderSize = 8
	smuxCmdFIN     = 1
	smuxCmdNOP     = 3 // keep-alive
)

// endsWithFIN reports whether the last data segment of the KCP packet p ends
// with an smux FIN frame (a version-2 header with an empty body). In stream
// mode smux frames do not follow segment boundaries, so the check is of the
// bytes only; a closing session writes nothing after its FINs, which is
// what makes the last bytes meaningful. A packet that does not parse has no
// FIN.
func endsWithFIN(p []byte) bool {
	var last []byte // payload of the last data segment
	parsed := walkSegments(p, func(seg kcpSegment) bool {
		if seg.cmd == kcp.IKCP_CMD_PUSH {
			last = seg.payload
		}
		return true
	})
	if !parsed || len(last) < smuxHeaderSize {
		return false
	}
	h := last[len(last)-smuxHeaderSize:]
	return h[0] == smuxVersion && h[1] == smuxCmdFIN && h[2] == 0 && h[3] == 0
}
