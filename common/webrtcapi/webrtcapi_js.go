//go:build js

package webrtcapi

import "github.com/pion/webrtc/v5"

// New returns an API configured by se. In the browser the WebRTC stack is
// the browser's own; there are no pion interceptors to leave out.
func New(se webrtc.SettingEngine) *webrtc.API {
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}
