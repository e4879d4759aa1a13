package client

import (
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/dtlsshape"
)

// dtlsShape returns the DTLS handshake shape the configuration asks for:
// covertdtls-config's mode and, with covertdtls-fingerprint, the captured
// ClientHello to mimic instead of Chromium's.
func (c *Config) dtlsShape() (dtlsshape.Mode, *dtlsshape.Profile, error) {
	mode, err := dtlsshape.ParseMode(c.CovertDTLSConfig)
	if err != nil {
		return 0, nil, err
	}
	if c.CovertDTLSFingerprint == "" {
		return mode, nil, nil
	}
	p, err := dtlsshape.ProfileFromClientHello(c.CovertDTLSFingerprint)
	if err != nil {
		return 0, nil, err
	}
	return mode, &p, nil
}

// shapeDTLS configures the handshake of every peer of the transport. The
// client is normally the DTLS server (its offer lets the proxy choose, and
// proxies choose to be the DTLS client): what shows is its certificate,
// the absence of a HelloVerifyRequest and, should a proxy make it the
// DTLS client, its ClientHello. It also installs the transport's network
// (t.net), wrapped so that hello records carry a browser's version and
// sockets have a large receive buffer (see dtlsshape.Apply).
func (t *Transport) shapeDTLS(se *webrtc.SettingEngine) {
	mode, profile, err := t.cfg.dtlsShape()
	if err == nil {
		err = dtlsshape.Apply(se, mode, profile, t.net)
	}
	if err != nil { // Validate already refused such a configuration
		t.logger.Warn("DTLS shaping off", "err", err)
		if t.net != nil {
			se.SetNet(t.net)
		}
	}
}

// iceCredentials returns what gives each peer browser-shaped ICE
// credentials, or nil (pion's) when shaping is disabled.
func (t *Transport) iceCredentials() func(*webrtc.SettingEngine) error {
	mode, _, err := t.cfg.dtlsShape()
	if err != nil {
		return nil
	}
	return dtlsshape.ICECredentials(mode)
}

// certificates returns the certificates for one PeerConnection: a fresh
// browser-like one, or nil (pion's own) when shaping is disabled.
func (t *Transport) certificates() []webrtc.Certificate {
	mode, _, err := t.cfg.dtlsShape()
	if err != nil {
		return nil
	}
	certs, err := dtlsshape.Certificates(mode)
	if err != nil {
		t.logger.Warn("no browser-like DTLS certificate; pion will make its own", "err", err)
		return nil
	}
	return certs
}

// shapeSDP gives the offer Chromium's layout unless DTLS shaping is
// disabled (dtlsshape.ShapeSDP).
func (t *Transport) shapeSDP(sdp string) string {
	if mode, _, err := t.cfg.dtlsShape(); err != nil || mode == dtlsshape.Disable {
		return sdp
	}
	return dtlsshape.ShapeSDP(sdp)
}
