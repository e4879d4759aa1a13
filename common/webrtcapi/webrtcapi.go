//go:build !js

// Package webrtcapi builds the pion WebRTC API object for Snowflake's
// peers, which only ever open data channels.
//
// pion's default API registers the media codecs and the RTP interceptors
// (NACK, TWCC, RTCP reports). Each interceptor runs its own ticker for every
// PeerConnection, even one that never carries media: an idle client woke up
// about 400 times a second and a proxy serving 50 clients paid that 50
// times over. Snowflake's SDP has no media sections, so leaving them out
// changes nothing on the wire.
package webrtcapi

import (
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v5"
)

// New returns an API for data-channel-only peers configured by se.
func New(se webrtc.SettingEngine) *webrtc.API {
	return webrtc.NewAPI(
		webrtc.WithSettingEngine(se),
		webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}),
	)
}
