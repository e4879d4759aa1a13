package turbotunnel

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xtaci/kcp-go/v5"
)

// segmentCounter is a client's packet conn that counts the data segments
// KCP hands it. It embeds the RedialPacketConn, so the session still sees
// everything that conn tells (bursts, transports).
type segmentCounter struct {
	*RedialPacketConn
	packets  atomic.Int64
	segments atomic.Int64
}

func (c *segmentCounter) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.packets.Add(1)
	walkSegments(p, func(seg kcpSegment) bool {
		if seg.cmd == kcp.IKCP_CMD_PUSH {
			c.segments.Add(1)
		}
		return true
	})
	return c.RedialPacketConn.WriteTo(p, addr)
}

// TestWaitingSessionStaysQuiet runs a client session that waits for its
// first transport (the broker has no proxy for it), with smux keep-alives
// every 100 ms instead of every 10 s, and counts the data segments KCP
// sends into the packet conn's queue once 40 keep-alives were written.
//
// No keep-alive can be acknowledged before a transport attaches, and KCP
// retransmits each on a schedule of its own that backs off only linearly
// (200 ms more per try, as nothing has set its RTO): with 32 of them in
// flight (the window KCP assumes before it hears from the server) the
// session woke and resent about 20 of them a second. Since only one of
// them can tell the server anything (that the client is alive, when the
// transport attaches), only one may be in flight: at that age it is
// resent at most every 1.2 s. Once a transport attaches, the session still
// carries a stream at once.
func TestWaitingSessionStaysQuiet(t *testing.T) {
	const (
		interval = 100 * time.Millisecond
		settle   = 40 * interval // past the 32 keep-alives KCP sends unasked
		window   = 4 * time.Second
		// One keep-alive retransmitted for the whole window, at least
		// 1.2 s apart, and one more for scheduling slack.
		maxSegments = 5
	)
	srv := newEchoServer(t)
	attach := make(chan struct{})
	pconn := NewRedialPacketConn(NewClientID(), func(ctx context.Context) (net.Conn, error) {
		select {
		case <-attach:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", srv.ln.Addr().String())
	}, nil)
	counter := &segmentCounter{RedialPacketConn: pconn}
	cfg := ClientSmuxConfig()
	cfg.KeepAliveInterval = interval
	sess, err := dialSessionConfig(counter, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	time.Sleep(settle)
	segs0, pkts0 := counter.segments.Load(), counter.packets.Load()
	time.Sleep(window)
	segs, pkts := counter.segments.Load()-segs0, counter.packets.Load()-pkts0
	t.Logf("with no transport, after %d keep-alives: %d data segments in %d packets in %v", settle/interval, segs, pkts, window)
	if segs > maxSegments {
		t.Errorf("with no transport, KCP sent %d data segments (%.1f/s) in %d packets in %v after %d keep-alives, want at most %d: each unacknowledged keep-alive is retransmitted on its own",
			segs, float64(segs)/window.Seconds(), pkts, window, settle/interval, maxSegments)
	}

	close(attach)
	start := time.Now()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	echoTransfer(t, st, 1000, nil)
	took := time.Since(start)
	t.Logf("first echo %v after the transport was allowed", took.Round(time.Millisecond))
	// Loopback takes milliseconds; a second would be KCP's update timer.
	if limit := time.Second; took > limit {
		t.Errorf("first echo took %v after the transport was allowed, want under %v", took.Round(time.Millisecond), limit)
	}
}

// fakeWaiter is a transportWaiter whose answer the test sets.
type fakeWaiter struct {
	wait uint64
	ok   bool
}

func (w *fakeWaiter) waiting() (uint64, bool) { return w.wait, w.ok }

// TestKeepAliveFilter: while the packet conn waits for a transport, the
// first keep-alive of each wait passes and the rest are dropped; with a
// transport, and for every other frame, everything passes.
func TestKeepAliveFilter(t *testing.T) {
	nop := [][]byte{{smuxVersion, smuxCmdNOP, 0, 0, 0, 0, 0, 0}, nil}
	split := [][]byte{{smuxVersion, smuxCmdNOP, 0}, {0, 0, 0, 0, 0}}
	fin := [][]byte{{smuxVersion, smuxCmdFIN, 0, 0, 3, 0, 0, 0}, nil}
	psh := [][]byte{{smuxVersion, 2, 8, 0, 3, 0, 0, 0}, make([]byte, 8)}
	w := &fakeWaiter{}
	f := &keepAliveFilter{waiter: w}
	steps := []struct {
		what    string
		waiting bool
		wait    uint64
		frame   [][]byte
		drop    bool
	}{
		{"keep-alive with a transport", false, 0, nop, false},
		{"another with a transport", false, 0, nop, false},
		{"first of a wait", true, 1, nop, false},
		{"second of the wait", true, 1, nop, true},
		{"third of the wait, header split", true, 1, split, true},
		{"FIN during the wait", true, 1, fin, false},
		{"data during the wait", true, 1, psh, false},
		{"first of the next wait", true, 2, nop, false},
		{"second of the next wait", true, 2, nop, true},
		{"keep-alive with a transport again", false, 0, nop, false},
		{"first of a wait after it", true, 3, nop, false},
	}
	for _, s := range steps {
		w.ok, w.wait = s.waiting, s.wait
		if got := f.redundant(s.frame); got != s.drop {
			t.Errorf("%s: dropped %v, want %v", s.what, got, s.drop)
		}
	}
	if (&keepAliveFilter{}).redundant(nop) {
		t.Error("a filter without a waiter dropped a keep-alive")
	}
}
