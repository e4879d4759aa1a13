package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v5"
	"github.com/snowflake-go/snowflake/common/candidate"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
)

// Timing of the NAT probe (wire-protocol §4.5).
const (
	probeGatherTimeout = 10 * time.Second
	probeOpenTimeout   = 20 * time.Second
)

// probeNAT asks the probe service to connect to us. The service sits behind
// an address-dependent-mapping NAT, so its data channel only opens if our
// own NAT does not filter by address: unrestricted if it opens, restricted
// if not. Errors (service unreachable, bad reply) mean the type is unknown.
func (p *Proxy) probeNAT(ctx context.Context) (nat.Type, error) {
	pc, err := p.api.NewPeerConnection(p.peerConfiguration())
	if err != nil {
		return nat.Unknown, fmt.Errorf("nat probe: %w", err)
	}
	defer pc.Close()
	dc, err := pc.CreateDataChannel("test", nil)
	if err != nil {
		return nat.Unknown, fmt.Errorf("nat probe: %w", err)
	}
	// In the browser, closing the channel also releases its JavaScript
	// callbacks, which closing the PeerConnection does not.
	defer dc.Close()
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nat.Unknown, fmt.Errorf("nat probe: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nat.Unknown, fmt.Errorf("nat probe: set offer: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(probeGatherTimeout):
	case <-ctx.Done():
		return nat.Unknown, ctx.Err()
	}
	offerSDP := pc.LocalDescription().SDP
	if !p.cfg.KeepLocalAddresses {
		offerSDP = candidate.StripLocal(offerSDP)
	}
	env, err := messages.SessionDescription{Type: messages.SDPTypeOffer, SDP: offerSDP}.Encode()
	if err != nil {
		return nat.Unknown, fmt.Errorf("nat probe: %w", err)
	}
	body, err := (&messages.ProxyPollResponse{Status: messages.StatusClientMatch, Offer: env}).Encode()
	if err != nil {
		return nat.Unknown, fmt.Errorf("nat probe: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	resp, err := p.send(pctx, p.cfg.NATProbeURL, body)
	cancel()
	if err != nil {
		return nat.Unknown, fmt.Errorf("nat probe: %w", err)
	}
	ans, err := messages.DecodeAnswerRequest(resp)
	if err != nil {
		return nat.Unknown, fmt.Errorf("nat probe: %w", err)
	}
	sd, err := messages.DecodeSessionDescription(ans.Answer)
	if err != nil {
		return nat.Unknown, fmt.Errorf("nat probe: %w", err)
	}
	if sd.Type != messages.SDPTypeAnswer {
		return nat.Unknown, errors.New("nat probe: reply is not an answer")
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sd.SDP}); err != nil {
		return nat.Unknown, fmt.Errorf("nat probe: set answer: %w", err)
	}
	t := time.NewTimer(probeOpenTimeout)
	defer t.Stop()
	select {
	case <-opened:
		return nat.Unrestricted, nil
	case <-t.C:
		return nat.Restricted, nil
	case <-ctx.Done():
		return nat.Unknown, ctx.Err()
	}
}
