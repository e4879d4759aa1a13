package turbotunnel

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"
)

// dropOneDataPacket is a client packet conn that loses the nth packet
// carrying a KCP data segment, as a full queue to the transport would.
type dropOneDataPacket struct {
	net.PacketConn
	n       int64
	seen    atomic.Int64
	dropped atomic.Bool
}

func (c *dropOneDataPacket) WriteTo(p []byte, addr net.Addr) (int, error) {
	data := false
	walkSegments(p, func(seg kcpSegment) bool {
		data = data || seg.cmd == kcp.IKCP_CMD_PUSH
		return !data
	})
	if data && c.seen.Add(1) == c.n {
		c.dropped.Store(true)
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

// TestUploadLossRecoveredAtOnce loses one packet in the middle of a
// client's upload and checks that the client resends it as soon as the
// server's acknowledgments show the gap (KCP's early retransmission), not
// when its update timer (clientUpdateInterval, 1 s) comes round: behind the
// lost segment the server can deliver nothing, so the smux window closes
// and the client soon has nothing new to write.
//
// kcp-go v5.6.24 passes this test even without the session's kicker
// (showsSendGap), although its uploads through the server stalled without
// it (server's TestUploadDoesNotStall): the losses there, and when they
// fall among the writes, are not this test's one lost packet.
func TestUploadLossRecoveredAtOnce(t *testing.T) {
	const size = 3 << 20
	srv := newStreamServer(t, func(st *smux.Stream) {
		defer st.Close()
		if _, err := io.ReadFull(st, make([]byte, size)); err != nil {
			return
		}
		st.Write([]byte{1})
	})
	var drop *dropOneDataPacket
	_, _, _, sess := dialWrappedSession(t, srv, func(c net.PacketConn) net.PacketConn {
		// About 1.4 MB in: past the first smux window.
		drop = &dropOneDataPacket{PacketConn: c, n: 1000}
		return drop
	})
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	if _, err := st.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(st, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !drop.dropped.Load() {
		t.Fatalf("the upload sent %d data packets, fewer than the %dth to lose", drop.seen.Load(), drop.n)
	}
	// Loopback takes a few tens of milliseconds; waiting for the timer
	// takes the RTO, a second at least.
	if limit := clientUpdateInterval * time.Millisecond * 6 / 10; took > limit {
		t.Errorf("a %d-byte upload that lost one packet took %v, want under %v: the client resent it on its timer", size, took.Round(time.Millisecond), limit)
	}
}
