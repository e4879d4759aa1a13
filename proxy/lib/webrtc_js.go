//go:build js

package proxy

import (
	"github.com/pion/webrtc/v4"
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
