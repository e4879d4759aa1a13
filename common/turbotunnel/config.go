package turbotunnel

import (
	"fmt"
	"time"

	"github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"
)

// The single KCP and smux configuration of the project. Deployed clients
// and servers use exactly these values (wire-protocol.md §5.4, §5.5); a
// change here changes the wire behaviour of both ends.
const (
	// MTU is the KCP MTU: the largest packet either side sends. Upstream
	// servers cut packets to this size, so larger ones would be corrupted.
	MTU = 1400
	// WindowSize is KCP's send and receive window, in packets. It is large
	// so that throughput is limited by the path, not by KCP.
	WindowSize = 65535

	smuxVersion           = 2
	smuxKeepAliveInterval = 10 * time.Second
	// The client waits longer than the server before declaring a silent
	// session dead: it may be between proxies for minutes.
	clientKeepAliveTimeout = 10 * time.Minute
	serverKeepAliveTimeout = 4 * time.Minute
	smuxMaxFrameSize       = 32768
	smuxMaxReceiveBuffer   = 4 * 1024 * 1024
	smuxMaxStreamBuffer    = 1024 * 1024

	// ClientMapTimeout is how long the server keeps an outgoing queue for a
	// ClientID no transport carries: long enough for a client to find a new
	// proxy.
	ClientMapTimeout = 1 * time.Minute
)

// KCP update intervals, in milliseconds: how often a session runs its
// timers (retransmissions, pending acknowledgments). None is on the wire.
const (
	// serverUpdateInterval is what the library makes of upstream's
	// requested 0. A server session runs longer intervals when it has
	// nothing in flight (idleUpdateInterval) and when it has a deep send
	// buffer on a long round trip (busyInterval).
	serverUpdateInterval = 10
	// clientUpdateInterval is much longer. A client mostly receives, and
	// it acknowledges each burst it receives as soon as it has read it
	// (kcpPacketConn), so its timer is left with retransmitting what the
	// client sent, and a downloading client sends little: an smux window
	// update per 512 KiB read. Each tick costs the client a wake-up, most
	// of them for nothing. In a runtime trace of one of 50 clients sharing
	// a 2-core machine (bench -clients 10,50), the timer woke it 9.6 times
	// a second at 100 ms, about as often as arriving data did (10.2); at
	// 1 s, the clients' CPU per MB fell by a quarter and the aggregate
	// rose by 15–18% (three pairs of runs), and an idle client wakes a few
	// times a second instead of a dozen, which matters to laptops and
	// phones.
	//
	// KCP adds the interval to every retransmission timeout it derives
	// (RTT + max(interval, 4 × RTT variance)), so the client retransmits
	// after its RTT plus 1 s at least, and a tick scheduled before a write
	// may be up to 1 s away. Under a client, KCP loses data mostly when a
	// proxy goes away: noticing that takes 5 s (ICE), and what KCP
	// resends meanwhile waits in the RedialPacketConn's queue for the next
	// proxy. Early retransmission, once a later segment is acknowledged,
	// would wait for the timer too on kcp-go v5.6, which resends only when
	// it flushes; the session's kicker flushes instead (showsSendGap).
	// A timer that only waits for acknowledgments between writes was
	// tried, and saved nothing: a downloading client always waits for
	// the acknowledgment of its last window update, because it arrives
	// behind the data the proxy already queued.
	clientUpdateInterval = 1000
	// timerAckUpdateInterval is the client's interval over a packet conn
	// that does not tell where bursts end: its acknowledgments then ride
	// the timer, which must be short for the server's sake.
	timerAckUpdateInterval = 100
)

// configureKCP applies the shared KCP settings to a session: stream mode,
// windows, MTU, no "nodelay", the given update interval, no fast resend and
// no congestion window. Both ends must agree on stream mode.
func configureKCP(conn *kcp.UDPSession, interval int) error {
	conn.SetStreamMode(true)
	conn.SetWindowSize(WindowSize, WindowSize)
	// nodelay=0 (min RTO 100 ms), resend=0, nc=1 (congestion control off).
	conn.SetNoDelay(0, interval, 0, 1)
	if !conn.SetMtu(MTU) {
		return fmt.Errorf("turbotunnel: kcp: cannot set MTU %d", MTU)
	}
	return nil
}

func smuxConfig(keepAliveTimeout time.Duration) *smux.Config {
	cfg := smux.DefaultConfig()
	cfg.Version = smuxVersion
	cfg.KeepAliveInterval = smuxKeepAliveInterval
	cfg.KeepAliveTimeout = keepAliveTimeout
	cfg.MaxFrameSize = smuxMaxFrameSize
	cfg.MaxReceiveBuffer = smuxMaxReceiveBuffer
	cfg.MaxStreamBuffer = smuxMaxStreamBuffer
	return cfg
}

// ClientSmuxConfig returns the smux configuration of the client side.
func ClientSmuxConfig() *smux.Config { return smuxConfig(clientKeepAliveTimeout) }

// ServerSmuxConfig returns the smux configuration of the server side.
func ServerSmuxConfig() *smux.Config { return smuxConfig(serverKeepAliveTimeout) }
