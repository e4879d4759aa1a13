package testenv

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v5"
)

// ExchangeSDP runs a non-trickle offer/answer exchange between two peer
// connections, as Snowflake's rendezvous does: each side's description is
// passed on only once its ICE gathering is complete. It returns the offer
// as sent, for tests that inspect its candidates.
func ExchangeSDP(t testing.TB, offerer, answerer *webrtc.PeerConnection) string {
	t.Helper()
	sentOffer := GatheredOffer(t, offerer)
	if err := answerer.SetRemoteDescription(sentOffer); err != nil {
		t.Fatalf("testenv: set remote offer: %v", err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatalf("testenv: create answer: %v", err)
	}
	if err := offerer.SetRemoteDescription(setGathered(t, answerer, answer)); err != nil {
		t.Fatalf("testenv: set remote answer: %v", err)
	}
	return sentOffer.SDP
}

// GatheredOffer creates pc's offer and sets it, and returns it once ICE
// gathering is complete, with every candidate in it, as a Snowflake client
// sends it through the broker.
func GatheredOffer(t testing.TB, pc *webrtc.PeerConnection) webrtc.SessionDescription {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatalf("testenv: create offer: %v", err)
	}
	return setGathered(t, pc, offer)
}

// setGathered sets desc as pc's local description and returns it once ICE
// gathering is complete (30 s at most).
func setGathered(t testing.TB, pc *webrtc.PeerConnection, desc webrtc.SessionDescription) webrtc.SessionDescription {
	t.Helper()
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		t.Fatalf("testenv: set local description: %v", err)
	}
	select {
	case <-gathered:
	case <-time.After(30 * time.Second):
		t.Fatal("testenv: ICE gathering did not complete within 30 s")
	}
	return *pc.LocalDescription()
}

// SendHello opens a data channel from offerer to answerer, connects them
// with [ExchangeSDP] and sends "hello" once the channel is open. It returns
// the offer as sent and a function that waits (up to 20 s) for the message
// to arrive at the answerer and fails the test if it does not.
func SendHello(t testing.TB, offerer, answerer *webrtc.PeerConnection) (offer string, waitHello func()) {
	t.Helper()
	got := make(chan string, 1)
	answerer.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case got <- string(m.Data):
			default:
			}
		})
	})
	dc, err := offerer.CreateDataChannel("test", nil)
	if err != nil {
		t.Fatalf("testenv: create data channel: %v", err)
	}
	dc.OnOpen(func() { dc.SendText("hello") })
	offer = ExchangeSDP(t, offerer, answerer)
	return offer, func() {
		t.Helper()
		select {
		case m := <-got:
			if m != "hello" {
				t.Fatalf("testenv: data channel delivered %q, want \"hello\"", m)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("testenv: no message over the data channel")
		}
	}
}
