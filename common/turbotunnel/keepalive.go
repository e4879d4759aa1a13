package turbotunnel

import (
	"net"
	"sync"

	"github.com/xtaci/kcp-go/v5"
)

// transportWaiter is a packet conn that tells whether it is waiting for a
// transport, as [RedialPacketConn] does.
type transportWaiter interface {
	// waiting reports whether no transport is connected, and a count
	// that stays the same for as long as the wait lasts.
	waiting() (wait uint64, ok bool)
}

// keepAliveFilter stands between a client's smux session and its KCP
// session, and keeps all but the first of smux's keep-alives (NOP frames)
// out of KCP while the packet conn waits for a transport: for its first
// proxy, or the next one.
//
// No keep-alive can be acknowledged while there is no transport, and KCP
// retransmits each unacknowledged segment on a schedule of its own that
// backs off only linearly, by its RTO (200 ms until it has measured a round
// trip). Every 10 s another keep-alive joined them, up to the 32 segments
// KCP sends before it has heard the server's window, so a client waiting
// for a proxy did more and more work for nothing: after 5 minutes KCP woke
// about 5 times a second to resend one of them into the packet conn's
// queue, where they piled up as copies. One keep-alive in flight tells the
// server all the others would once a transport connects (that the client
// is alive), and from then on keep-alives pass again. The frames dropped
// are whole, so the server's stream of frames stays aligned.
type keepAliveFilter struct {
	*kcp.UDPSession
	waiter transportWaiter // nil: the packet conn cannot tell; nothing is dropped

	mu      sync.Mutex
	sent    bool   // a keep-alive went into KCP during the wait below
	sentFor uint64 // the wait (transportWaiter's count) it went in during
}

func newKeepAliveFilter(sess *kcp.UDPSession, pconn net.PacketConn) *keepAliveFilter {
	f := &keepAliveFilter{UDPSession: sess}
	f.waiter, _ = pconn.(transportWaiter)
	return f
}

// WriteBuffers implements the vectored write smux uses for each frame.
func (f *keepAliveFilter) WriteBuffers(v [][]byte) (int, error) {
	if f.redundant(v) {
		n := 0
		for _, b := range v {
			n += len(b)
		}
		return n, nil
	}
	return f.UDPSession.WriteBuffers(v)
}

// Write writes b as one frame, like WriteBuffers.
func (f *keepAliveFilter) Write(b []byte) (int, error) { return f.WriteBuffers([][]byte{b}) }

// redundant reports whether v is a keep-alive to drop: one written while
// the packet conn waits for a transport, after another during the same
// wait.
func (f *keepAliveFilter) redundant(v [][]byte) bool {
	if f.waiter == nil || !isKeepAlive(v) {
		return false
	}
	wait, ok := f.waiter.waiting()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !ok {
		f.sent = false
		return false
	}
	if f.sent && f.sentFor == wait {
		return true
	}
	f.sent, f.sentFor = true, wait
	return false
}

// isKeepAlive reports whether v, one frame as smux writes it, is a
// keep-alive: a header alone, of a NOP with no body, on stream 0.
func isKeepAlive(v [][]byte) bool {
	var h [smuxHeaderSize]byte
	n := 0
	for _, b := range v {
		if n+len(b) > len(h) {
			return false
		}
		n += copy(h[n:], b)
	}
	return n == smuxHeaderSize && h == [smuxHeaderSize]byte{smuxVersion, smuxCmdNOP}
}
