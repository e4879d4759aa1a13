package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/candidate"
	"github.com/snowflake-go/snowflake/common/dataconn"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/common/pionlog"
	"github.com/snowflake-go/snowflake/common/webrtcapi"
)

// Peer timing (wire protocol §3.6).
const (
	// DataChannelTimeout is how long a matched proxy has to open the data
	// channel after its answer arrived.
	DataChannelTimeout = 10 * time.Second
	// StaleTimeout closes a peer from which no KCP packet was received
	// this long; other bytes (junk, padding) do not count.
	StaleTimeout = 20 * time.Second
	// gatherTimeout bounds ICE gathering; STUN servers that do not answer
	// just contribute no candidate.
	gatherTimeout = 10 * time.Second
)

// ErrDataChannelTimeout means a matched proxy never opened the channel.
var ErrDataChannelTimeout = errors.New("client: data channel did not open in time")

// BrokerError is an error string the broker returned for a poll, such as
// "no snowflake proxies currently available".
type BrokerError struct{ Message string }

func (e *BrokerError) Error() string { return "client: broker: " + e.Message }

// selectICEServers shuffles the STUN list and, when more than two remain,
// keeps the first half (rounded up), so no two rendezvous reveal the whole
// list and no single server sees every client.
func selectICEServers(urls []string) []string {
	s := append([]string(nil), urls...)
	mrand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	if len(s) > 2 {
		s = s[:int(math.Ceil(float64(len(s))/2))]
	}
	return s
}

// webrtcAPI builds the pion API for one peer: detached data channels (read
// and written as streams by our own goroutines) and no mDNS. Local
// addresses are removed from the offer text (see candidate.StripLocal),
// not filtered at gathering time, which would also lose the
// server-reflexive candidates of a client behind a NAT.
func (t *Transport) webrtcAPI() *webrtcapi.Factory {
	var se webrtc.SettingEngine
	se.LoggerFactory = pionlog.New(t.logger)
	se.DetachDataChannels()
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	// A peer that goes quiet (proxy killed) is noticed after 5 s; the
	// session then moves to the next proxy instead of waiting for the
	// 20 s staleness timeout. Most such deaths are noticed at once, from
	// the ICMP error the proxy's host sends back (see unreachableWatch);
	// these timeouts are left for the silent ones.
	se.SetICETimeouts(5*time.Second, 10*time.Second, 2*time.Second)
	if t.cfg.KeepLocalAddresses {
		se.SetIncludeLoopbackCandidate(true)
	}
	// shapeDTLS also installs t.net (the SOCKS proxy's, if any).
	t.shapeDTLS(&se)
	return webrtcapi.NewFactory(se, t.iceCredentials())
}

// newPeer runs one rendezvous: it builds an offer with all candidates,
// exchanges it through the broker for a proxy's answer and waits for the
// data channel to open.
func (t *Transport) newPeer(ctx context.Context) (*dataconn.Conn, error) {
	var servers []webrtc.ICEServer
	if sel := selectICEServers(t.cfg.ICEServers); len(sel) > 0 {
		servers = []webrtc.ICEServer{{URLs: sel}}
	}
	watch := &unreachableWatch{logger: t.logger}
	pc, err := t.newPeerConnection(webrtc.Configuration{ICEServers: servers, Certificates: t.certificates()}, watch)
	if err != nil {
		return nil, fmt.Errorf("client: new peer connection: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			pc.Close()
		}
	}()
	var labelID [8]byte
	rand.Read(labelID[:])
	ordered := true
	dc, err := pc.CreateDataChannel("snowflake-"+hex.EncodeToString(labelID[:]), &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		return nil, fmt.Errorf("client: create data channel: %w", err)
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	failed := make(chan struct{})
	var failOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			failOnce.Do(func() { close(failed) })
		}
	})

	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("client: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("client: set local description: %w", err)
	}
	// No trickle ICE: the broker carries one message each way, so the
	// offer must already hold every candidate.
	select {
	case <-gathered:
	case <-time.After(gatherTimeout):
		t.logger.Warn("ICE gathering timed out; sending the candidates gathered so far")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	offerSDP := pc.LocalDescription().SDP
	if !t.cfg.KeepLocalAddresses {
		offerSDP = candidate.StripLocal(offerSDP)
	}
	offerSDP = t.shapeSDP(offerSDP)
	envelope, err := messages.SessionDescription{Type: messages.SDPTypeOffer, SDP: offerSDP}.Encode()
	if err != nil {
		return nil, fmt.Errorf("client: encode offer: %w", err)
	}
	declared := t.nat.declared()
	reqBody, err := (&messages.ClientPollRequest{Offer: envelope, NAT: declared, Fingerprint: t.cfg.BridgeFingerprint}).Encode()
	if err != nil {
		return nil, fmt.Errorf("client: encode poll: %w", err)
	}
	start := time.Now()
	respBody, err := t.method.Exchange(ctx, reqBody)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	resp, err := messages.DecodeClientPollResponse(respBody)
	if err != nil {
		return nil, fmt.Errorf("client: broker response: %w", err)
	}
	if resp.Error != "" {
		return nil, &BrokerError{Message: resp.Error}
	}
	answer, err := messages.DecodeSessionDescription(resp.Answer)
	if err != nil {
		return nil, fmt.Errorf("client: broker answer: %w", err)
	}
	if answer.Type != "answer" {
		return nil, fmt.Errorf("client: broker answer has type %q, want \"answer\"", answer.Type)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}); err != nil {
		return nil, fmt.Errorf("client: set remote description: %w", err)
	}
	t.logger.Debug("received answer", "rendezvous", time.Since(start), "nat_declared", declared)

	timer := time.NewTimer(DataChannelTimeout)
	defer timer.Stop()
	select {
	case <-opened:
	case <-failed:
		return nil, errors.New("client: peer connection failed before the data channel opened")
	case <-timer.C:
		t.nat.openTimedOut()
		return nil, ErrDataChannelTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	conn, err := dataconn.New(dc, dataconn.Config{
		IdleTimeout: StaleTimeout,
		// Only KCP packets keep the peer alive (the session's
		// RedialPacketConn vouches for them), so a proxy that sends
		// junk is dropped as stale like a silent one.
		ExplicitLife: true,
		OnClose:      func() { pc.Close() },
	})
	if err != nil {
		return nil, fmt.Errorf("client: detach data channel: %w", err)
	}
	// A failed or closed ICE/DTLS connection ends the peer at once, so the
	// session moves on without waiting for the staleness timeout.
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			conn.CloseWithError(fmt.Errorf("client: peer connection %s", s))
		}
	})
	if s := pc.ConnectionState(); s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
		conn.CloseWithError(fmt.Errorf("client: peer connection %s", s))
	}
	watch.watch(pc, conn)
	ok = true
	t.logger.Info("connected to a proxy", "rendezvous_and_open", time.Since(start))
	return conn, nil
}

// natState holds the discovered NAT type and the declaration policy.
type natState struct {
	logger *slog.Logger

	mu     sync.Mutex // guards the fields below
	real   nat.Type
	honest bool // set after a data-channel timeout under the pretence
}

func newNATState(logger *slog.Logger) *natState {
	return &natState{real: nat.Unknown, logger: logger}
}

func (s *natState) set(t nat.Type) {
	s.mu.Lock()
	s.real = t
	s.mu.Unlock()
}

// declared is the NAT type sent to the broker. While the real type is
// unknown the client claims unrestricted, which gets it the plentiful
// restricted-pool proxies; once that failed to connect it tells the truth.
func (s *natState) declared() nat.Type {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.real == nat.Unknown && !s.honest {
		return nat.Unrestricted
	}
	return s.real
}

func (s *natState) openTimedOut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.real == nat.Unknown && !s.honest {
		s.honest = true
		s.logger.Info("a proxy failed to connect while the NAT type was unknown; declaring it unknown from now on")
	}
}
