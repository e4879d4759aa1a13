//go:build !js

package proxy

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/dtlsshape"
	"github.com/snowflake-go/snowflake/common/pionlog"
)

// sctpReceiveBuffer is the SCTP receive window. pion's 1 MiB default caps a
// single client's upload at about 1 MiB per round trip; 4 MiB lets a bulk
// transfer keep the pipe full without much memory per idle client (the
// buffer only fills when the relay is slower than the client).
const sctpReceiveBuffer = 4 << 20

// settingEngine returns the WebRTC settings of every PeerConnection the
// proxy makes.
func (c *Config) settingEngine() (webrtc.SettingEngine, error) {
	var se webrtc.SettingEngine
	se.LoggerFactory = pionlog.New(c.Logger)
	se.DetachDataChannels()
	// Like upstream and browsers: no mDNS candidates, no ICE-TCP.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	// Upstream proxies skip DTLS HelloVerify to resemble browsers.
	se.SetDTLSInsecureSkipHelloVerify(true)
	se.SetSCTPMaxReceiveBufferSize(sctpReceiveBuffer)
	// SCTP zero checksum (RFC 9653) would save the CRC32c, but with it
	// enabled the association never establishes with Debian's 2.5.1 client
	// (old pion/sctp), measured in TestDebianClientThroughOurProxy; so it
	// stays off.
	// Local addresses are hidden by removing them from the answer
	// (StripLocalCandidates), not by pion's IP filter: with a filter, pion
	// gathers server-reflexive candidates only on the addresses that pass
	// it, so a proxy whose only interface is behind a home NAT would offer
	// no candidate at all.
	se.SetIncludeLoopbackCandidate(c.KeepLocalAddresses)
	if c.OutboundAddress != "" {
		ip, err := netip.ParseAddr(c.OutboundAddress)
		if err != nil {
			return se, fmt.Errorf("outbound address: %w", err)
		}
		se.SetNAT1To1IPs([]string{ip.String()}, webrtc.ICECandidateTypeHost)
	}
	if c.EphemeralPortMin != 0 {
		if err := se.SetEphemeralUDPPortRange(c.EphemeralPortMin, c.EphemeralPortMax); err != nil {
			return se, fmt.Errorf("ephemeral port range: %w", err)
		}
	}
	mode, err := dtlsshape.ParseMode(c.CovertDTLSConfig)
	if err != nil {
		return se, err
	}
	if err := dtlsshape.Apply(&se, mode, nil, nil); err != nil {
		return se, err
	}
	if c.ConfigureWebRTC != nil {
		c.ConfigureWebRTC(&se)
	}
	return se, nil
}

// iceCredentials returns what gives each PeerConnection browser-shaped
// ICE credentials, or nil (pion's) when DTLS shaping is disabled.
func (c *Config) iceCredentials() func(*webrtc.SettingEngine) error {
	mode, err := dtlsshape.ParseMode(c.CovertDTLSConfig)
	if err != nil { // Validate rejected this already
		return nil
	}
	return dtlsshape.ICECredentials(mode)
}

// validateDTLSShape reports an unknown covertdtls-config value.
func (c *Config) validateDTLSShape() error {
	_, err := dtlsshape.ParseMode(c.CovertDTLSConfig)
	return err
}

// shapeSDP gives the answer Chromium's layout unless DTLS shaping is
// disabled (dtlsshape.ShapeSDP).
func (p *Proxy) shapeSDP(sdp string) string {
	if mode, err := dtlsshape.ParseMode(p.cfg.CovertDTLSConfig); err != nil || mode == dtlsshape.Disable {
		return sdp
	}
	return dtlsshape.ShapeSDP(sdp)
}

// peerConfiguration is the configuration of every PeerConnection: the
// STUN servers, and a fresh browser-like certificate unless DTLS shaping
// is disabled. pion's own certificate (130-bit serial, 30 days) would
// tell the proxy apart from a browser.
func (p *Proxy) peerConfiguration() webrtc.Configuration {
	conf := webrtc.Configuration{ICEServers: p.iceServers()}
	mode, err := dtlsshape.ParseMode(p.cfg.CovertDTLSConfig)
	if err != nil { // Validate rejected this already
		return conf
	}
	certs, err := dtlsshape.Certificates(mode)
	if err != nil {
		p.log.Warn("no browser-like DTLS certificate; pion will make its own", "err", err)
		return conf
	}
	conf.Certificates = certs
	return conf
}

// poster sends broker and NAT-probe requests with net/http.
func (c *Config) poster() poster {
	return func(ctx context.Context, u string, body []byte) ([]byte, error) {
		return post(ctx, c.HTTPClient, u, body)
	}
}

// detachChannel returns the data channel as a byte stream.
func detachChannel(dc *webrtc.DataChannel) (io.ReadWriteCloser, error) {
	rwc, err := dc.Detach()
	if err != nil {
		return nil, err
	}
	c := &nativeChannel{ReadWriteCloser: rwc, dc: dc, shut: make(chan struct{}), ended: make(chan struct{})}
	// A detached channel has no close event of its own; a Snowflake
	// client's peer connection carries this one channel, so the end of
	// its SCTP association is the client's close.
	if t := dc.Transport(); t != nil {
		t.OnClose(func(error) { c.endOnce.Do(func() { close(c.ended) }) })
	}
	return c, nil
}

// nativeChannel is a detached data channel that can wait for the client to
// acknowledge what was written to it (deliveringCloser), and tells when the
// client closed it (closeWatcher).
type nativeChannel struct {
	io.ReadWriteCloser
	dc   *webrtc.DataChannel
	shut chan struct{} // closed by Close
	once sync.Once

	ended   chan struct{} // closed when the SCTP association ended
	endOnce sync.Once
}

// clientClosed is closed once the client's SCTP association ended: the
// client closed its peer connection, or the teardown did.
func (c *nativeChannel) clientClosed() <-chan struct{} { return c.ended }

// deliveredPoll is how often closeDelivered looks at the amount still
// unacknowledged. It runs once per connection, at its end.
const deliveredPoll = 10 * time.Millisecond

// closeDelivered waits, at most timeout, until the client's SCTP has
// acknowledged all that was written, or Close is called. The teardown
// then closes the peer connection, which aborts the association and drops
// whatever it still held; a reader of pion's SCTP stream still gets what
// was acknowledged before the abort ends the stream. The channel stays
// open: the teardown closes it.
func (c *nativeChannel) closeDelivered(timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(deliveredPoll)
	defer tick.Stop()
	for c.dc.BufferedAmount() > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-c.shut:
			return
		}
	}
}

func (c *nativeChannel) Close() error {
	c.once.Do(func() { close(c.shut) })
	return c.ReadWriteCloser.Close()
}

// dcMessageLimit returns the longest message the proxy may send on dc:
// maxDCMessage, or less if the client's offer announced a smaller
// max-message-size. pion refuses a longer message outright, so without
// this every coalesced message to such a client would fail and the relay's
// data to it would be lost. The association fixed the limit before the
// channel opened, from the offer and pion's own bounds, so the offer is
// not read again.
func dcMessageLimit(dc *webrtc.DataChannel, _ string) int {
	if t := dc.Transport(); t != nil {
		if m := int(t.GetCapabilities().MaxMessageSize); m > 0 && m < maxDCMessage {
			return m
		}
	}
	return maxDCMessage
}

// checkOfferSDP refuses an offer that is not SDP, with the parser that
// SetRemoteDescription would use on it, so that no offer it accepts is
// refused.
func checkOfferSDP(offer string) error {
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(offer); err != nil {
		return fmt.Errorf("SDP: %w", err)
	}
	return nil
}
