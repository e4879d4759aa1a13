//go:build !js

package webrtcapi

import (
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v5"
)

// NewPeerConnectionNet makes a PeerConnection configured by conf whose
// sockets come from n instead of the settings' network, so that they can
// tell their owner about this one peer (see ReportUnreachable).
func (f *Factory) NewPeerConnectionNet(conf webrtc.Configuration, n transport.Net) (*webrtc.PeerConnection, error) {
	se, err := f.settings()
	if err != nil {
		return nil, err
	}
	se.SetNet(n)
	return New(se).NewPeerConnection(conf)
}
