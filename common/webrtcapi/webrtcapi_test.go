//go:build !js

package webrtcapi

import (
	"strings"
	"testing"

	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestDataChannelOnly connects two peers made by New over loopback and
// moves a message, and checks that the offer has no media section.
func TestDataChannelOnly(t *testing.T) {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	// Loopback only: tests use no other address.
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	api := New(se)
	offerer, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer offerer.Close()
	answerer, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer answerer.Close()

	sdp, waitHello := testenv.SendHello(t, offerer, answerer)
	if strings.Contains(sdp, "m=audio") || strings.Contains(sdp, "m=video") {
		t.Fatalf("offer has a media section:\n%s", sdp)
	}
	waitHello()
}
