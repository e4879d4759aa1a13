package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/common/turbotunnel"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// rendezvousClient is a minimal WebRTC client in the test process: it polls
// our broker like a snowflake client and opens a data channel to the proxy.
type rendezvousClient struct {
	pc *webrtc.PeerConnection
	rw io.ReadWriteCloser
}

func connectClient(ctx context.Context, api *webrtc.API, brokerURL string) (*rendezvousClient, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*rendezvousClient, error) { pc.Close(); return nil, err }
	dc, err := pc.CreateDataChannel("snowflake-0123456789abcdef", nil)
	if err != nil {
		return fail(err)
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	<-gathered
	env, _ := messages.SessionDescription{Type: "offer", SDP: pc.LocalDescription().SDP}.Encode()
	body, _ := (&messages.ClientPollRequest{Offer: env, NAT: nat.Unrestricted, Fingerprint: messages.DefaultBridgeFingerprint}).Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, brokerURL+"client", bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fail(err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, messages.MaxBodySize))
	resp.Body.Close()
	cr, err := messages.DecodeClientPollResponse(b)
	if err != nil {
		return fail(err)
	}
	if cr.Error != "" {
		return fail(fmt.Errorf("broker: %s", cr.Error))
	}
	sd, err := messages.DecodeSessionDescription(cr.Answer)
	if err != nil {
		return fail(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sd.SDP}); err != nil {
		return fail(err)
	}
	select {
	case <-opened:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	rw, err := dc.Detach()
	if err != nil {
		return fail(err)
	}
	// The turbotunnel preamble, so that the server keeps the connection.
	id := turbotunnel.NewClientID()
	rw.Write(append(turbotunnel.Token[:], id[:]...))
	return &rendezvousClient{pc: pc, rw: rw}, nil
}

func rssMB(t *testing.T, pid int) (rss, hwm float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseFloat(f[1], 64)
			if f[0] == "VmRSS:" {
				rss = kb / 1024
			} else {
				hwm = kb / 1024
			}
		}
	}
	return rss, hwm
}

// TestBenchmarkCapacity measures, with our broker, server and proxy
// processes, how long 20 clients arriving at once take to connect, and the
// proxy's RSS with 50 connected clients. Run with
//
//	SNOWFLAKE_BENCH=1 go test -run TestBenchmarkCapacity -v ./proxy/
func TestBenchmarkCapacity(t *testing.T) {
	if os.Getenv("SNOWFLAKE_BENCH") == "" {
		t.Skip("set SNOWFLAKE_BENCH=1 to run")
	}
	if testenv.IsolateNetwork(t) {
		return
	}
	sk := startSink(t)
	dir := t.TempDir()
	serverPort := testenv.FreePort(t)
	server := testenv.Start(t, "server", nil, testenv.Binary(t, "./server"),
		"-listen", fmt.Sprintf("127.0.0.1:%d", serverPort), "-orport", sk.ln.Addr().String(),
		"-disable-tls", "-stats-interval", "0")
	server.WaitFor(t, "listening", 60*time.Second)
	relay := fmt.Sprintf("ws://127.0.0.1:%d/", serverPort)
	bridges := filepath.Join(dir, "bridges.json")
	os.WriteFile(bridges, []byte(fmt.Sprintf(`{"displayName":"loopback","webSocketAddress":%q,"fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}`+"\n", relay)), 0o600)
	brokerPort := testenv.FreePort(t)
	broker := testenv.Start(t, "broker", nil, testenv.Binary(t, "./broker"),
		"-addr", fmt.Sprintf("127.0.0.1:%d", brokerPort), "-disable-tls", "-bridge-list-path", bridges,
		"-allowed-relay-pattern", "127.0.0.1$", "-disable-geoip")
	broker.WaitFor(t, "listening", 60*time.Second)
	brokerURL := fmt.Sprintf("http://127.0.0.1:%d/", brokerPort)
	stun := testenv.STUN(t).URL()
	proxy := testenv.Start(t, "proxy", nil, testenv.Binary(t, "./proxy"),
		"-broker", brokerURL, "-relay", relay, "-stun", stun, "-keep-local-addresses",
		"-allow-non-tls-relay", "-allowed-relay-hostname-pattern", "127.0.0.1$",
		"-allow-proxying-to-private-addresses", "-nat-probe-server", "", "-poll-interval", "2s",
		"-capacity", "60", "-summary-interval", "0s", "-geoipdb", "", "-geoip6db", "")
	proxy.WaitFor(t, "proxy started", 30*time.Second)
	pid := proxy.Cmd.Process.Pid
	// Let the staggered pollers reach the broker.
	time.Sleep(3 * time.Second)

	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.DetachDataChannels()
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var clients []*rendezvousClient
	defer func() {
		for _, c := range clients {
			c.rw.Close()
			c.pc.Close()
		}
	}()
	burst := func(n int) (time.Duration, int) {
		start := time.Now()
		var wg sync.WaitGroup
		failed := 0
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := connectClient(ctx, api, brokerURL)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Logf("client: %v", err)
					failed++
					return
				}
				clients = append(clients, c)
			}()
		}
		wg.Wait()
		return time.Since(start), failed
	}
	rss0, _ := rssMB(t, pid)
	d, failed := burst(20)
	t.Logf("20 clients at once: %d connected in %v (%d refused, they would retry after 10 s)", 20-failed, d.Round(time.Millisecond), failed)
	if failed > 0 {
		t.Errorf("%d of 20 simultaneous clients were not matched in the first poll cycle", failed)
	}
	for len(clients) < 50 && ctx.Err() == nil {
		time.Sleep(2 * time.Second) // pollers return after each match
		burst(min(20, 50-len(clients)))
	}
	time.Sleep(2 * time.Second)
	rss, hwm := rssMB(t, pid)
	t.Logf("proxy RSS: %.1f MB idle, %.1f MB with %d clients (peak %.1f MB)", rss0, rss, len(clients), hwm)
}
