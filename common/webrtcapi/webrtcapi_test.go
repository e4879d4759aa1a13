//go:build !js

package webrtcapi

import (
	"strings"
	"testing"
	"time"

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

	got := make(chan string, 1)
	answerer.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) { got <- string(m.Data) })
	})
	dc, err := offerer.CreateDataChannel("test", nil)
	if err != nil {
		t.Fatal(err)
	}
	dc.OnOpen(func() { dc.SendText("hello") })

	sdp := testenv.ExchangeSDP(t, offerer, answerer)
	if strings.Contains(sdp, "m=audio") || strings.Contains(sdp, "m=video") {
		t.Fatalf("offer has a media section:\n%s", sdp)
	}
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("received %q", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no message over the data channel")
	}
}
