//go:build js

package proxy

import (
	"github.com/pion/webrtc/v5"
)

// settingEngine returns the WebRTC settings of every PeerConnection the
// proxy makes. In a browser the RTCPeerConnection is the browser's own, so
// the candidate filters, port range and transport tuning of the native build
// do not apply; only data-channel detaching does.
func (c *Config) settingEngine() (webrtc.SettingEngine, error) {
	var se webrtc.SettingEngine
	se.DetachDataChannels()
	if c.ConfigureWebRTC != nil {
		c.ConfigureWebRTC(&se)
	}
	return se, nil
}

// iceCredentials is nil: the browser draws its own ICE credentials.
func (c *Config) iceCredentials() func(*webrtc.SettingEngine) error { return nil }

// validateDTLSShape accepts any value: in a browser the DTLS handshake is
// the browser's own, so covertdtls-config does not apply.
func (c *Config) validateDTLSShape() error { return nil }

// peerConfiguration is the configuration of every PeerConnection; the
// browser makes its own certificates.
func (p *Proxy) peerConfiguration() webrtc.Configuration {
	return webrtc.Configuration{ICEServers: p.iceServers()}
}

// shapeSDP keeps the answer as it is: in a browser it is the browser's.
func (p *Proxy) shapeSDP(sdp string) string { return sdp }

// dcMessageLimit returns the longest message the proxy may send to the
// client whose offer is offerSDP: maxDCMessage, or less if the offer
// announced a smaller max-message-size. Chromium refuses to send a longer
// message and closes the data channel instead. The limit is read from the
// offer rather than from the browser's RTCSctpTransport.maxMessageSize:
// the offer holds it in every browser before the channel opens, while the
// transport's copy comes with the browser's own state events and is
// missing from older browsers.
func dcMessageLimit(_ *webrtc.DataChannel, offerSDP string) int { return offerMessageLimit(offerSDP) }

// checkOfferSDP accepts any text: the browser parses the offer, and its
// parser need not agree with pion's.
func checkOfferSDP(string) error { return nil }
