package client

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/dataconn"
	"github.com/snowflake-go/snowflake/common/dtlsshape"
	"github.com/snowflake-go/snowflake/common/webrtcapi"
)

// unreachableWatch ends a peer when its sockets learn, from an ICMP error,
// that the proxy's address no longer answers: a proxy killed on a live
// host (or behind a NAT that relays the host's errors) is then left at
// its next datagram, where ICE's disconnected timeout takes 5 to 7 s.
//
// Only the remote address of the selected candidate pair counts, and only
// once the data channel is open: errors about other candidates (checks
// that lost, a STUN server) say nothing about the path in use.
type unreachableWatch struct {
	logger *slog.Logger

	mu     sync.Mutex // guards the fields below
	conn   *dataconn.Conn
	remote netip.Addr // unmapped and without zone
	port   uint16
	done   bool
}

// newPeerConnection makes a peer's PeerConnection with sockets that
// report unreachable destinations to w.
func (t *Transport) newPeerConnection(conf webrtc.Configuration, w *unreachableWatch) (*webrtc.PeerConnection, error) {
	mode, _, err := t.cfg.dtlsShape()
	if err != nil { // shapeDTLS already warned; as there, no shaping nor reports
		return t.api.NewPeerConnection(conf)
	}
	n, err := dtlsshape.Net(mode, t.net, webrtcapi.ReportUnreachable(w.report))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return t.api.NewPeerConnectionNet(conf, n)
}

// watch starts acting on reports for conn, whose PeerConnection pc has
// its data channel open.
func (w *unreachableWatch) watch(pc *webrtc.PeerConnection, conn *dataconn.Conn) {
	ice := pc.SCTP().Transport().ICETransport()
	w.mu.Lock()
	w.conn = conn
	w.mu.Unlock()
	// The controlling agent (the client, which offers) rarely changes
	// its nomination, but if it does the new pair is the one to watch.
	ice.OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) { w.selectPair(p) })
	if p, err := ice.GetSelectedCandidatePair(); err == nil {
		w.selectPair(p)
	}
}

func (w *unreachableWatch) selectPair(p *webrtc.ICECandidatePair) {
	if p == nil || p.Remote == nil {
		return
	}
	a, err := netip.ParseAddr(p.Remote.Address)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil { // an mDNS name: nothing to compare with
		w.remote, w.port = netip.Addr{}, 0
		return
	}
	w.remote, w.port = a.Unmap().WithZone(""), p.Remote.Port
}

// report is the sockets' ReportUnreachable callback. It runs on a
// socket's reader or sender, so the peer is closed elsewhere: closing it
// closes that socket, which waits for them.
func (w *unreachableWatch) report(to netip.AddrPort, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.conn == nil || !w.remote.IsValid() || to.Port() != w.port || to.Addr().Unmap().WithZone("") != w.remote {
		return
	}
	w.done = true
	w.logger.Info("proxy unreachable; leaving it", "icmp", reason)
	go w.conn.CloseWithError(fmt.Errorf("client: proxy unreachable (ICMP %s)", reason))
}
