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

// Listener is the server side of turbotunnel: a KCP listener over a packet
// conn, whose sessions run smux, open their send window gradually (see
// sendRamp) and slow their KCP timers while they have nothing in flight
// (see idlePacer).
type Listener struct {
	ln       *kcp.Listener
	sessions sync.Map     // net.Addr → *idlePacer, for the sessions Session started
	idle     atomic.Int64 // sessions idle at the last sweep

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Listen starts a KCP listener over pconn (no encryption, no FEC). Closing
// the listener does not close pconn.
func Listen(pconn net.PacketConn) (*Listener, error) {
	l := &Listener{done: make(chan struct{})}
	ln, err := kcp.ServeConn(nil, 0, 0, &pacedPacketConn{PacketConn: pconn, sessions: &l.sessions})
	if err != nil {
		return nil, fmt.Errorf("turbotunnel: kcp listen: %w", err)
	}
	l.ln = ln
	l.wg.Go(l.sweepLoop)
	return l, nil
}

// AcceptKCP waits for the next client's KCP session. Pass it to Session.
func (l *Listener) AcceptKCP() (*kcp.UDPSession, error) { return l.ln.AcceptKCP() }

// Close stops the listener. Sessions already accepted stay open, but no
// longer go idle.
func (l *Listener) Close() error {
	err := l.ln.Close()
	l.closeOnce.Do(func() { close(l.done) })
	l.wg.Wait()
	return err
}

// IdleSessions is how many sessions ran their KCP timer at the idle
// interval at the last sweep.
func (l *Listener) IdleSessions() int { return int(l.idle.Load()) }

// Session configures an accepted KCP session and starts smux over it as the
// server side. Closing the smux session closes conn.
func (l *Listener) Session(conn *kcp.UDPSession) (*smux.Session, error) {
	if err := configureKCP(conn, serverUpdateInterval); err != nil {
		return nil, err
	}
	addr := conn.RemoteAddr()
	p := newIdlePacer(conn)
	p.ramp = newSendRamp(conn, time.Now())
	// A client that starts a new session under the same ClientID replaces
	// the old entry; the old session's release leaves the new one alone.
	l.sessions.Store(addr, p)
	pc := &pacedConn{UDPSession: conn, pacer: p, release: func() { l.sessions.CompareAndDelete(addr, p) }}
	mux, err := smux.Server(pc, ServerSmuxConfig())
	if err != nil {
		pc.release()
		return nil, fmt.Errorf("turbotunnel: smux server: %w", err)
	}
	return mux, nil
}

// sweepLoop moves sessions between the update intervals every idleSweep.
func (l *Listener) sweepLoop() {
	t := time.NewTicker(idleSweep)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case now := <-t.C:
			idle := 0
			l.sessions.Range(func(_, v any) bool {
				if v.(*idlePacer).sweep(now) {
					idle++
				}
				return true
			})
			l.idle.Store(int64(idle))
		}
	}
}

// pacedPacketConn is the listener's packet conn: it shows every packet to
// the pacer of the session it belongs to.
type pacedPacketConn struct {
	net.PacketConn
	sessions *sync.Map
}

func (c *pacedPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		if v, ok := c.sessions.Load(addr); ok {
			v.(*idlePacer).received(p[:n])
		}
	}
	return n, addr, err
}

func (c *pacedPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if v, ok := c.sessions.Load(addr); ok {
		v.(*idlePacer).sent(p)
	}
	return c.PacketConn.WriteTo(p, addr)
}

// pacedConn is a server session's KCP conn as smux sees it: every write goes
// through the pacer, and closing it ends the pacing.
type pacedConn struct {
	*kcp.UDPSession
	pacer   *idlePacer
	release func()
	once    sync.Once
}

func (c *pacedConn) Write(b []byte) (int, error) {
	c.pacer.beginWrite()
	defer c.pacer.endWrite()
	return c.UDPSession.Write(b)
}

// WriteBuffers is the vectored write smux uses when the conn has one.
func (c *pacedConn) WriteBuffers(v [][]byte) (int, error) {
	c.pacer.beginWrite()
	defer c.pacer.endWrite()
	return c.UDPSession.WriteBuffers(v)
}

func (c *pacedConn) Close() error {
	c.once.Do(c.release)
	return c.UDPSession.Close()
}
