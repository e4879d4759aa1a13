//go:build !js

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// echoChunk is the size of the echo relay's messages: twice what the
// client of TestBrowserSmallMaxMessageSize announces.
const echoChunk = 32 << 10

// TestBrowserSmallMaxMessageSize is proxy/lib's TestClientSmallMaxMessageSize
// with the page proxy in Chromium: a client whose offer announces a
// max-message-size of 16 KiB sends 1 MiB through the page proxy to an echo
// relay and must get all of it back. The relay echoes in 32 KiB messages.
// Chromium refuses to send a message longer than the client announced and
// closes the data channel instead ("Trying to send packet bigger than the
// max message size: 65535 vs max of 16384"), so the proxy must split.
func TestBrowserSmallMaxMessageSize(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	web := webDir(t)
	n := &network{t: t, dir: t.TempDir(), stun: testenv.STUN(t)}
	n.relay, n.relayPort = startEchoRelay(t)
	n.startBroker()

	ws, page := startPageProxy(t, n, web, true)

	const announced = echoChunk / 2
	c := dialBrokerClient(t, n, announced)
	// What Chromium itself takes for the limit, to tell its behaviour
	// from the proxy's when the exchange fails.
	if v, err := page.eval(`window.recordedPCs.map(pc => pc.sctp ? pc.sctp.maxMessageSize : null)`); err == nil {
		t.Logf("Chromium's RTCSctpTransport.maxMessageSize: %s", v)
	}
	c.exchange(t, 32*echoChunk)
	ws.waitStatus("the exchange counted", 10*time.Second, func(s status) bool { return s.BytesDown >= 32*echoChunk })
}

// startEchoRelay starts a WebSocket server on loopback, in place of the
// bridge server, that sends back what it receives in messages of echoChunk
// bytes (what is left over is held until it fills one). In a browser the
// proxy's WebSocket writes never wait, so the client's small messages
// reach the relay one by one; an echo message for message would reach the
// client longer than it announced only if the proxy's queue to the client
// happened to coalesce, and a larger echo does so every time.
func startEchoRelay(t *testing.T) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The page's WebSocket carries the page's Origin, which is
		// not the relay's.
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		var pending []byte
		for {
			_, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			pending = append(pending, b...)
			for len(pending) >= echoChunk {
				if err := c.Write(r.Context(), websocket.MessageBinary, pending[:echoChunk]); err != nil {
					return
				}
				pending = pending[echoChunk:]
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf("ws://127.0.0.1:%d/", port), port
}

// brokerClient is a bare WebRTC client that rendezvouses through our
// broker and then speaks directly on its data channel, with no Snowflake
// session on top: the relay is an echo server.
type brokerClient struct {
	pc *webrtc.PeerConnection
	rw io.ReadWriteCloser
}

// dialBrokerClient connects a client whose offer announces maxMessage as
// its max-message-size to whichever proxy the broker matches.
func dialBrokerClient(t *testing.T, n *network, maxMessage uint32) *brokerClient {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.DetachDataChannels()
	se.SetSCTPMaxMessageSize(maxMessage)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	dc, err := pc.CreateDataChannel("snowflake", nil)
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	sdp := testenv.GatheredOffer(t, pc).SDP
	if want := fmt.Sprintf("a=max-message-size:%d", maxMessage); !strings.Contains(sdp, want) {
		t.Fatalf("the client's offer does not announce %s", want)
	}
	env, err := messages.SessionDescription{Type: messages.SDPTypeOffer, SDP: sdp}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// As our client declares while its NAT type is unknown: the page
	// proxy, which runs no NAT probe, is in the restricted pool.
	body, err := (&messages.ClientPollRequest{Offer: env, NAT: nat.Unrestricted}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.brokerURL+"client", bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("client poll: %v", err)
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, messages.MaxBodySize))
	resp.Body.Close()
	if err != nil {
		t.Fatalf("client poll: %v", err)
	}
	cr, err := messages.DecodeClientPollResponse(out)
	if err != nil {
		t.Fatalf("client poll: %s: %v", out, err)
	}
	if cr.Error != "" {
		t.Fatalf("client poll: broker says %q", cr.Error)
	}
	answer, err := messages.DecodeSessionDescription(cr.Answer)
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}); err != nil {
		t.Fatalf("set answer: %v", err)
	}
	select {
	case <-opened:
	case <-ctx.Done():
		t.Fatal("the data channel did not open")
	}
	rw, err := dc.Detach()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rw.Close() })
	return &brokerClient{pc: pc, rw: rw}
}

// exchange sends size random bytes in 1400-byte messages, as a Snowflake
// client's KCP does, reads the echo and compares SHA-256 digests.
func (c *brokerClient) exchange(t *testing.T, size int) {
	t.Helper()
	// A proxy that stops relaying leaves the read blocked until its idle
	// timeout; closing the connection at a deadline fails the test sooner.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.pc.Close() })
	defer stop()
	testenv.EchoExchange(t, c.rw, size)
}
