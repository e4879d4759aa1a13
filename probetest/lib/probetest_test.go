package probetest

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/messages"
)

// probeBody returns a probe request as a proxy sends it: a client-match
// poll response carrying the offer of a fresh PeerConnection with a "test"
// data channel. The PeerConnection is closed when the test ends.
func probeBody(t *testing.T) []byte {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.CreateDataChannel("test", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	env, err := messages.SessionDescription{Type: messages.SDPTypeOffer, SDP: offer.SDP}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	body, err := (&messages.ProxyPollResponse{Status: messages.StatusClientMatch, Offer: env}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// silentSTUN returns the URL of a UDP socket that never answers, so the
// probe's ICE gathering waits for its STUN timeout.
func silentSTUN(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return "stun:" + c.LocalAddr().String()
}

// TestCloseWaitsForProbesInFlight closes the server while a probe request
// is still gathering candidates. Close must not return before that probe
// has released its PeerConnection, and a probe that arrives after Close
// must be refused instead of starting a PeerConnection nobody closes.
func TestCloseWaitsForProbesInFlight(t *testing.T) {
	s, err := New(Config{STUNURLs: []string{silentSTUN(t)}, KeepLocalAddresses: true})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	done := make(chan int, 1)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/probe", bytes.NewReader(probeBody(t))))
		done <- w.Code
	}()
	// Wait until the probe holds its slot (it is then gathering).
	for deadline := time.Now().Add(10 * time.Second); len(s.slots) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the probe never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Close()
	if n := len(s.slots); n != 0 {
		t.Errorf("Close returned while %d probe(s) still held a PeerConnection", n)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the probe in flight did not end after Close")
	}

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/probe", bytes.NewReader(probeBody(t))))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("probe after Close: status %d, want %d", w.Code, http.StatusServiceUnavailable)
	}
	if n := len(s.slots); n != 0 {
		t.Errorf("a probe after Close left %d PeerConnection(s) open", n)
	}
}
