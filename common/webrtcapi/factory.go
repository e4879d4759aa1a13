package webrtcapi

import (
	"fmt"

	"github.com/pion/webrtc/v5"
)

// Factory makes PeerConnections from one set of settings.
//
// pion reads a peer's ICE credentials from the SettingEngine, so peers
// that must each have their own credentials shaped like a browser's
// (Chromium: 4-character ufrag, 24-character password; pion's own are
// 16 and 32) each need their own API. Without fresh, all peers share one
// API and pion draws the credentials.
type Factory struct {
	se    webrtc.SettingEngine
	fresh func(*webrtc.SettingEngine) error
	api   *webrtc.API // shared when fresh is nil
}

// NewFactory returns a Factory for se. fresh, if not nil, is called on a
// copy of se before every PeerConnection (to set its ICE credentials).
func NewFactory(se webrtc.SettingEngine, fresh func(*webrtc.SettingEngine) error) *Factory {
	f := &Factory{se: se, fresh: fresh}
	if fresh == nil {
		f.api = New(se)
	}
	return f
}

// NewPeerConnection makes a PeerConnection configured by conf.
func (f *Factory) NewPeerConnection(conf webrtc.Configuration) (*webrtc.PeerConnection, error) {
	if f.api != nil {
		return f.api.NewPeerConnection(conf)
	}
	se, err := f.settings()
	if err != nil {
		return nil, err
	}
	return New(se).NewPeerConnection(conf)
}

// settings returns a copy of the settings for one PeerConnection, made
// fresh if the Factory makes them so.
func (f *Factory) settings() (webrtc.SettingEngine, error) {
	se := f.se
	if f.fresh != nil {
		if err := f.fresh(&se); err != nil {
			return se, fmt.Errorf("webrtcapi: %w", err)
		}
	}
	return se, nil
}
