//go:build !js

package webrtcapi

import (
	"fmt"

	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v5"
)

// NewPeerConnectionNet makes a PeerConnection configured by conf whose
// sockets come from n instead of the settings' network, so that they can
// tell their owner about this one peer (see ReportUnreachable).
func (f *Factory) NewPeerConnectionNet(conf webrtc.Configuration, n transport.Net) (*webrtc.PeerConnection, error) {
	se := f.se
	if f.fresh != nil {
		if err := f.fresh(&se); err != nil {
			return nil, fmt.Errorf("webrtcapi: %w", err)
		}
	}
	se.SetNet(n)
	return New(se).NewPeerConnection(conf)
}
