package socksnet

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestWebRTCThroughProxy: a pion peer connection whose SettingEngine uses
// a Net reaches a peer that uses the host network. Its offer names only
// the proxy's address, and its packets pass through the SOCKS server.
func TestWebRTCThroughProxy(t *testing.T) {
	srv := startServer(t, "u", "p")
	n, err := New(Config{Addr: srv.Addr(), Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	api := func(proxied bool) *webrtc.API {
		var se webrtc.SettingEngine
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		// The proxy listens on loopback, and so does the far peer.
		se.SetIncludeLoopbackCandidate(true)
		if proxied {
			se.SetNet(n)
		}
		return webrtc.NewAPI(webrtc.WithSettingEngine(se))
	}
	offerer, err := api(true).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer offerer.Close()
	answerer, err := api(false).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer answerer.Close()

	dc, err := offerer.CreateDataChannel("test", nil)
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	echoed := make(chan []byte, 1)
	dc.OnMessage(func(m webrtc.DataChannelMessage) { echoed <- m.Data })
	answerer.OnDataChannel(func(d *webrtc.DataChannel) {
		d.OnMessage(func(m webrtc.DataChannelMessage) { d.Send(m.Data) })
	})

	sdp := testenv.ExchangeSDP(t, offerer, answerer)
	cands := 0
	for _, line := range strings.Split(sdp, "\n") {
		if !strings.HasPrefix(line, "a=candidate:") {
			continue
		}
		cands++
		f := strings.Fields(line)
		if len(f) < 8 || f[4] != "127.0.0.1" {
			t.Errorf("offer has a candidate that is not the proxy's address: %s", line)
		}
	}
	if cands == 0 {
		t.Fatalf("offer has no candidates:\n%s", sdp)
	}
	select {
	case <-opened:
	case <-time.After(20 * time.Second):
		t.Fatal("data channel did not open through the proxy")
	}
	msg := bytes.Repeat([]byte("snow"), 2000)
	for i := 0; i < 10; i++ {
		if err := dc.Send(msg); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-echoed:
			if !bytes.Equal(got, msg) {
				t.Fatal("echo differs")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no echo")
		}
	}
	if srv.Associations.Load() == 0 || srv.UDPPackets.Load() < 20 {
		t.Errorf("proxy saw %d associations and %d datagrams; want the peer's traffic",
			srv.Associations.Load(), srv.UDPPackets.Load())
	}
	t.Logf("%d associations, %d datagrams, %d bytes relayed", srv.Associations.Load(), srv.UDPPackets.Load(), srv.UDPBytes.Load())
}
