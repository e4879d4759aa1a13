// Command badproxy is a misbehaving Snowflake proxy for the end-to-end
// fault tests. It polls the broker, answers offers and relays between the
// client's data channel and the bridge like a real proxy, but towards the
// client it slips garbage packets in between the real ones: well-framed
// encapsulation data chunks whose contents are random bytes (never valid
// KCP for the client's session) and runt chunks shorter than a KCP header.
// A correct client drops them and keeps its session.
//
// It serves one client at a time and prints "client connected" and, at the
// end of each client, "injected N garbage packets".
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/encapsulation"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/common/websocketconn"
)

func main() {
	broker := flag.String("broker", "", "broker URL")
	relay := flag.String("relay", "", "default relay WebSocket URL")
	stun := flag.String("stun", "", "STUN URL")
	every := flag.Int("every", 20, "inject garbage after every this many real packets")
	flag.Parse()
	if *broker == "" || *relay == "" {
		fmt.Fprintln(os.Stderr, "badproxy: -broker and -relay are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *broker, *relay, *stun, *every); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "badproxy: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, broker, relay, stun string, every int) error {
	var se webrtc.SettingEngine
	se.DetachDataChannels()
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	var ice []webrtc.ICEServer
	if stun != "" {
		ice = []webrtc.ICEServer{{URLs: []string{stun}}}
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	fmt.Println("badproxy started")
	for ctx.Err() == nil {
		sid := rand.Text()[:22]
		body, err := (&messages.ProxyPollRequest{Sid: sid, Type: "badproxy", NAT: nat.Unknown, AcceptedRelayPattern: "127.0.0.1$"}).Encode()
		if err != nil {
			return err
		}
		b, err := post(ctx, hc, broker+"proxy", body)
		if err != nil {
			fmt.Println("poll failed:", err)
			sleep(ctx, time.Second)
			continue
		}
		resp, err := messages.DecodeProxyPollResponse(b)
		if err != nil {
			return fmt.Errorf("poll response: %w", err)
		}
		if resp.Status != messages.StatusClientMatch {
			sleep(ctx, time.Second)
			continue
		}
		target := relay
		if resp.RelayURL != "" {
			target = resp.RelayURL
		}
		if err := serve(ctx, api, ice, hc, broker, sid, resp.Offer, target, every); err != nil {
			fmt.Println("client not served:", err)
		}
	}
	return ctx.Err()
}

func serve(ctx context.Context, api *webrtc.API, iceServers []webrtc.ICEServer, hc *http.Client, broker, sid, offerEnv, relay string, every int) error {
	offer, err := messages.DecodeSessionDescription(offerEnv)
	if err != nil {
		return err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: iceServers})
	if err != nil {
		return err
	}
	defer pc.Close()
	// A client that goes away without its close getting through (killed,
	// or exited before its SCTP association was shut down) is noticed
	// only by ICE: pion then reports the connection failed but leaves the
	// association up, and a read of the data channel waits on, so the
	// relay below must end itself then, as a real proxy's does.
	failed, fail := context.WithCancel(context.Background())
	defer fail()
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			fail()
		}
	})
	opened := make(chan *webrtc.DataChannel, 1)
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() {
			select {
			case opened <- dc:
			default:
			}
		})
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
		return err
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
	}
	env, err := messages.SessionDescription{Type: "answer", SDP: pc.LocalDescription().SDP}.Encode()
	if err != nil {
		return err
	}
	body, err := (&messages.AnswerRequest{Sid: sid, Answer: env}).Encode()
	if err != nil {
		return err
	}
	if _, err := post(ctx, hc, broker+"answer", body); err != nil {
		return err
	}
	var dc *webrtc.DataChannel
	select {
	case dc = <-opened:
	case <-time.After(20 * time.Second):
		return errors.New("data channel did not open")
	case <-ctx.Done():
		return ctx.Err()
	}
	rwc, err := dc.Detach()
	if err != nil {
		return err
	}
	defer rwc.Close()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ws, _, err := websocket.Dial(dctx, relay, nil)
	cancel()
	if err != nil {
		return fmt.Errorf("dial relay: %w", err)
	}
	conn := websocketconn.New(ws)
	defer conn.Close()
	fmt.Println("client connected")

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(conn, rwc)
		conn.Close()
	}()
	stop := context.AfterFunc(failed, func() {
		// Not just the data channel: its pending read can wait on for
		// the dead client. Closing the PeerConnection ends the
		// association, and with it that read.
		pc.Close()
		conn.Close()
	})
	defer stop()
	injected := 0
	br := bufio.NewReaderSize(conn, 64<<10)
	buf := make([]byte, 64<<10)
	var out bytes.Buffer
	for n := 1; ; n++ {
		k, err := encapsulation.ReadData(br, buf)
		if err != nil {
			break
		}
		out.Reset()
		encapsulation.WriteData(&out, buf[:k])
		if n%every == 0 {
			junk := make([]byte, 60)
			rand.Read(junk)
			encapsulation.WriteData(&out, junk)     // random "KCP" packet
			encapsulation.WriteData(&out, junk[:5]) // shorter than a KCP header
			injected += 2
		}
		if _, err := rwc.Write(out.Bytes()); err != nil {
			break
		}
	}
	rwc.Close()
	conn.Close()
	wg.Wait()
	fmt.Printf("injected %d garbage packets\n", injected)
	return nil
}

func post(ctx context.Context, hc *http.Client, url string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, messages.MaxBodySize))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return b, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
