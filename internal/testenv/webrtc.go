package testenv

import (
	"testing"

	"github.com/pion/webrtc/v5"
)

// ExchangeSDP runs a non-trickle offer/answer exchange between two peer
// connections, as Snowflake's rendezvous does: each side's description is
// passed on only once its ICE gathering is complete. It returns the offer
// as sent, for tests that inspect its candidates.
func ExchangeSDP(t testing.TB, offerer, answerer *webrtc.PeerConnection) string {
	t.Helper()
	complete := func(pc *webrtc.PeerConnection, desc webrtc.SessionDescription) webrtc.SessionDescription {
		t.Helper()
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(desc); err != nil {
			t.Fatalf("testenv: set local description: %v", err)
		}
		<-gathered
		return *pc.LocalDescription()
	}
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatalf("testenv: create offer: %v", err)
	}
	sentOffer := complete(offerer, offer)
	if err := answerer.SetRemoteDescription(sentOffer); err != nil {
		t.Fatalf("testenv: set remote offer: %v", err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatalf("testenv: create answer: %v", err)
	}
	if err := offerer.SetRemoteDescription(complete(answerer, answer)); err != nil {
		t.Fatalf("testenv: set remote answer: %v", err)
	}
	return sentOffer.SDP
}
