package turbotunnel

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"
)

// ServerAddr is the remote address a client-side KCP session uses. The
// client's packet conns ignore the address they write to (there is only one
// peer, the server, behind whatever transport is current) and report this
// address for every packet they read.
type ServerAddr struct{}

// Network implements net.Addr.
func (ServerAddr) Network() string { return "turbotunnel" }

// String implements net.Addr.
func (ServerAddr) String() string { return "server" }

// Session is a client's KCP+smux session over a packet conn.
type Session struct {
	pconn net.PacketConn
	kcp   *kcp.UDPSession
	mux   *smux.Session
	under *kcpPacketConn // the packet conn under KCP

	streamsClosed atomic.Int64 // streams closed through their Close

	closeOnce sync.Once
	done      chan struct{} // closed once everything is torn down
	wg        sync.WaitGroup
}

// DialSession starts a KCP session (random conversation id) and an smux
// client session over pconn, with the shared configuration. pconn must
// report [ServerAddr] as the source of the packets it reads, as
// [RedialPacketConn] does. The Session owns pconn: Close closes it.
func DialSession(pconn net.PacketConn) (*Session, error) {
	return dialSessionConfig(pconn, ClientSmuxConfig())
}

// dialSessionConfig is DialSession with the given smux configuration; tests
// shorten its keep-alive interval.
func dialSessionConfig(pconn net.PacketConn, cfg *smux.Config) (*Session, error) {
	under := newKCPPacketConn(pconn)
	conn, err := kcp.NewConn2(ServerAddr{}, nil, 0, 0, under)
	if err != nil {
		return nil, fmt.Errorf("turbotunnel: kcp dial: %w", err)
	}
	interval := clientUpdateInterval
	if under.bursts == nil {
		interval = timerAckUpdateInterval
	}
	if err := configureKCP(conn, interval); err != nil {
		conn.Close()
		return nil, err
	}
	under.session.Store(conn)
	mux, err := smux.Client(newKeepAliveFilter(conn, pconn), cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("turbotunnel: smux client: %w", err)
	}
	s := &Session{pconn: pconn, kcp: conn, mux: mux, under: under, done: make(chan struct{})}
	s.wg.Add(2)
	go func() {
		// The kicker: see showsSendGap.
		defer s.wg.Done()
		for {
			select {
			case <-under.kick:
				conn.Write(nil)
			case <-s.done:
				return
			}
		}
	}()
	go func() {
		// smux closes itself when KCP fails or keep-alives time out; tear
		// the rest down then too, so Done reports a dead session.
		defer s.wg.Done()
		<-mux.CloseChan()
		s.teardown()
	}()
	return s, nil
}

func (s *Session) teardown() {
	s.closeOnce.Do(func() {
		s.mux.Close()
		s.kcp.Close()
		s.pconn.Close()
		close(s.done)
	})
}

// OpenStream opens a new smux stream (one Tor connection at the server).
func (s *Session) OpenStream() (net.Conn, error) {
	st, err := s.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("turbotunnel: open stream: %w", err)
	}
	return &stream{Stream: st, s: s}, nil
}

// stream counts its Close, after which smux has handed KCP the stream's
// FIN.
type stream struct {
	*smux.Stream
	s    *Session
	once sync.Once
}

func (st *stream) Close() error {
	err := st.Stream.Close()
	st.once.Do(func() { st.s.streamsClosed.Add(1) })
	return err
}

// finFlushTimeout bounds how long Close waits for the FINs of the closed
// streams to leave KCP.
//
// The FIN tells the server that the client is done with the session, so it
// frees the session at once instead of resending the unacknowledged rest of
// a download into the void for minutes. KCP sends packets from a
// background queue that closing the session discards, and the FIN is the
// last thing a closing session writes: without the wait it was lost about
// one time in three.
const finFlushTimeout = 500 * time.Millisecond

// awaitFINs waits until as many FINs have left KCP as streams were closed.
func (s *Session) awaitFINs() {
	t := time.NewTimer(finFlushTimeout)
	defer t.Stop()
	for s.under.sent.Load() < s.streamsClosed.Load() {
		select {
		case <-s.under.signal:
		case <-t.C:
			return
		case <-s.done:
			return
		}
	}
}

// burstReader is a packet conn that tells which packet ends a burst: the
// last of what its transport had delivered, with nothing waiting behind it.
type burstReader interface {
	readBurst(p []byte) (n int, last bool, err error)
}

// kcpPacketConn is the packet conn under a client's KCP session. It counts
// the packets that end with an smux FIN frame, and has KCP acknowledge
// each burst of packets as soon as the burst has been read.
type kcpPacketConn struct {
	net.PacketConn
	bursts  burstReader // nil if PacketConn does not tell bursts
	session atomic.Pointer[kcp.UDPSession]
	ackNow  bool // what the session was last told; used by ReadFrom only

	sent   atomic.Int64
	signal chan struct{} // capacity 1: a FIN has left since the last receive

	gap  bool          // the packet ReadFrom returned last shows a gap (showsSendGap); ReadFrom only
	kick chan struct{} // capacity 1: asks the session's kicker for a flush
}

func newKCPPacketConn(pconn net.PacketConn) *kcpPacketConn {
	w := &kcpPacketConn{PacketConn: pconn, signal: make(chan struct{}, 1), kick: make(chan struct{}, 1)}
	w.bursts, _ = pconn.(burstReader)
	return w
}

// ReadFrom hands KCP the next packet; KCP's single read loop calls it.
//
// Without help, KCP acknowledges received data on its update timer, which
// costs a receiving client a wake-up of its own every interval, between
// the wake-ups that bring the data. The server sends in bursts (one
// WebSocket message, one data-channel message), so ReadFrom turns on KCP's
// "ACK no delay" for the last packet of a burst only: KCP then sends the
// acknowledgments of the whole burst in one packet right after reading it.
// The server also learns of delivery sooner, which keeps its RTT estimate
// (and so its retransmission timeout) free of the timer's delay.
//
// Upstream's servers and proxies send messages of at most 2 KiB, about one
// packet, so on their paths a client that keeps up acknowledges about
// every packet (TCP acknowledges every second segment). Capping that at
// one acknowledgment per 10 ms was tried: it left the end of a burst to
// the update timer, which the server's retransmission timeout (100 ms at
// least) can beat, and under load e2e's TestGarbageProxy, whose proxy
// forwards one packet per message, stalled.
func (w *kcpPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	// KCP's read loop has handed it the packet returned last.
	if w.gap {
		w.gap = false
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	if w.bursts == nil {
		n, addr, err := w.PacketConn.ReadFrom(p)
		if err == nil {
			w.gap = showsSendGap(p[:n])
		}
		return n, addr, err
	}
	n, last, err := w.bursts.readBurst(p)
	if err != nil {
		return 0, nil, err
	}
	w.gap = showsSendGap(p[:n])
	if last != w.ackNow {
		if sess := w.session.Load(); sess != nil {
			sess.SetACKNoDelay(last)
			w.ackNow = last
		}
	}
	return n, ServerAddr{}, nil
}

func (w *kcpPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := w.PacketConn.WriteTo(p, addr)
	if err == nil && endsWithFIN(p) {
		w.sent.Add(1)
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
	return n, err
}

// NumStreams returns the number of open streams.
func (s *Session) NumStreams() int { return s.mux.NumStreams() }

// Close closes smux, KCP and the packet conn, and waits for the session's
// goroutine. The FINs of streams closed before are sent first (see
// finFlushTimeout). It is idempotent.
func (s *Session) Close() error {
	s.awaitFINs()
	s.teardown()
	s.wg.Wait()
	return nil
}

// Done returns a channel closed when the session has died or been closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// kickMinWindow is the least receive window, in segments, the server must
// have advertised for showsSendGap to ask for a flush. The flush is an
// empty write, which waits like any other while KCP holds as many segments
// as that window, and a client holds far fewer: smux lets each stream have
// 1 MiB (750 segments) unread at the server. Were the empty write to wait,
// it could take the wake-up meant for a write of smux's, which would then
// wait for the next acknowledgment or the timer.
const kickMinWindow = 8192

// showsSendGap reports whether the KCP packet p acknowledges a segment
// beyond the server's cumulative acknowledgment: something the client sent
// before it was lost.
//
// kcp-go (v5.6) resends a segment early, once a later one is acknowledged
// and before its timeout, only when the session flushes, and a session
// flushes on a write, on an acknowledgment that advances its window, or on
// its timer. Behind a lost segment the window stops, smux soon stops
// writing, and a client's timer runs once a second
// (clientUpdateInterval): one session's upload through the server moved
// 9.5 MB/s between stalls of a second (TestUploadDoesNotStall). So once
// KCP has read such an acknowledgment, the session's kicker flushes with
// an empty write, which in kcp-go v5.6 runs a whole flush.
func showsSendGap(p []byte) bool {
	gap := false
	walkSegments(p, func(seg kcpSegment) bool {
		gap = seg.cmd == kcp.IKCP_CMD_ACK && int32(seg.sn-seg.una) > 0 && seg.wnd >= kickMinWindow
		return !gap
	})
	return gap
}
