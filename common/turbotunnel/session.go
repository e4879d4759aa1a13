package turbotunnel

import (
	"fmt"
	"net"
	"sync"

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

	closeOnce sync.Once
	done      chan struct{} // closed once everything is torn down
	wg        sync.WaitGroup
}

// DialSession starts a KCP session (random conversation id) and an smux
// client session over pconn, with the shared configuration. pconn must
// report [ServerAddr] as the source of the packets it reads, as
// [RedialPacketConn] does. The Session owns pconn: Close closes it.
func DialSession(pconn net.PacketConn) (*Session, error) {
	conn, err := kcp.NewConn2(ServerAddr{}, nil, 0, 0, pconn)
	if err != nil {
		return nil, fmt.Errorf("turbotunnel: kcp dial: %w", err)
	}
	if err := configureKCP(conn, clientUpdateInterval); err != nil {
		conn.Close()
		return nil, err
	}
	mux, err := smux.Client(conn, ClientSmuxConfig())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("turbotunnel: smux client: %w", err)
	}
	s := &Session{pconn: pconn, kcp: conn, mux: mux, done: make(chan struct{})}
	s.wg.Add(1)
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
	return st, nil
}

// NumStreams returns the number of open streams.
func (s *Session) NumStreams() int { return s.mux.NumStreams() }

// Close closes smux, KCP and the packet conn, and waits for the session's
// goroutine. It is idempotent.
func (s *Session) Close() error {
	s.teardown()
	s.wg.Wait()
	return nil
}

// Done returns a channel closed when the session has died or been closed.
func (s *Session) Done() <-chan struct{} { return s.done }
