package client

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/messages"
)

// killableNet is the operating system's network, with a way to close
// every UDP socket it made at once, as the death of a proxy's process
// does: no DTLS alert or SCTP abort is sent.
type killableNet struct {
	transport.Net
	mu    sync.Mutex
	conns []io.Closer
}

func (n *killableNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err == nil {
		n.mu.Lock()
		n.conns = append(n.conns, c)
		n.mu.Unlock()
	}
	return c, err
}

func (n *killableNet) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		c.Close()
	}
}

// answeringBroker answers every poll with a new pion peer on kn that
// accepts the data channel and discards what arrives.
func answeringBroker(t *testing.T, kn *killableNet) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := messages.DecodeClientPollRequest(body)
		if err != nil {
			t.Errorf("poll: %v", err)
			return
		}
		offer, err := messages.DecodeSessionDescription(req.Offer)
		if err != nil {
			t.Errorf("offer: %v", err)
			return
		}
		var se webrtc.SettingEngine
		se.SetNet(kn)
		se.SetIncludeLoopbackCandidate(true)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Errorf("answerer: %v", err)
			return
		}
		t.Cleanup(func() { pc.Close() })
		pc.OnDataChannel(func(dc *webrtc.DataChannel) { dc.OnMessage(func(webrtc.DataChannelMessage) {}) })
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
			t.Errorf("answerer: %v", err)
			return
		}
		answer, err := pc.CreateAnswer(nil)
		if err != nil {
			t.Errorf("answerer: %v", err)
			return
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		pc.SetLocalDescription(answer)
		<-gathered
		env, _ := messages.SessionDescription{Type: messages.SDPTypeAnswer, SDP: pc.LocalDescription().SDP}.Encode()
		b, _ := (&messages.ClientPollResponse{Answer: env}).Encode()
		w.Write(b)
	}))
}

// TestProxyUnreachable: when a proxy's sockets close abruptly on a live
// host, the host's ICMP port-unreachable ends the client's peer within a
// second, where ICE's disconnected timeout takes 5 to 7 s.
func TestProxyUnreachable(t *testing.T) {
	osNet, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	kn := &killableNet{Net: osNet}
	srv := answeringBroker(t, kn)
	defer srv.Close()
	tr, err := New(Config{BrokerURL: srv.URL + "/", KeepLocalAddresses: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := tr.newPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // data flows, as in a download's acknowledgements
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				conn.Write(make([]byte, 100))
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	kn.kill()
	killed := time.Now()
	select {
	case <-conn.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("peer still open 10 s after the proxy died")
	}
	took := time.Since(killed)
	t.Logf("peer ended %v after the proxy died: %v", took, conn.Err())
	if took > time.Second {
		t.Errorf("peer ended after %v, want within 1 s", took)
	}
	if err := conn.Err(); err == nil || !strings.Contains(err.Error(), "ICMP port unreachable") {
		t.Errorf("peer ended with %v, want the ICMP error", err)
	}
}
