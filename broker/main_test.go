package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/broker/ipcount"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/internal/stunserver"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// startBroker runs the snowflake-broker binary on a free loopback port with
// a one-bridge list pointing at relayURL, and returns its base URL.
func startBroker(t *testing.T, relayURL string, extra ...string) (string, *testenv.Process) {
	t.Helper()
	bin := testenv.Binary(t, "./broker")
	dir := t.TempDir()
	list := filepath.Join(dir, "bridges.json")
	line := fmt.Sprintf(`{"displayName":"loopback","webSocketAddress":%q,"fingerprint":"%s"}`+"\n", relayURL, messages.DefaultBridgeFingerprint)
	if err := os.WriteFile(list, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	args := append([]string{"-addr", "127.0.0.1:" + strconv.Itoa(port), "-disable-tls",
		"-bridge-list-path", list, "-allowed-relay-pattern", "127.0.0.1$", "-disable-geoip",
		"-metrics-log", filepath.Join(dir, "metrics.log"), "-metrics-interval", "1s"}, extra...)
	p := testenv.Start(t, "snowflake-broker", nil, bin, args...)
	p.WaitFor(t, "listening", 60*time.Second)
	return fmt.Sprintf("http://127.0.0.1:%d/", port), p
}

func httpPost(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, messages.MaxBodySize))
	return resp.StatusCode, string(b)
}

// TestBinaryRendezvous drives the real binary over loopback HTTP with the
// message codecs: proxy poll, client poll, answer; then checks the metrics
// log, SIGHUP handling and a clean exit on SIGTERM.
func TestBinaryRendezvous(t *testing.T) {
	ipDir := t.TempDir()
	base, p := startBroker(t, "ws://127.0.0.1:9/", "-ip-count-prefix", filepath.Join(ipDir, "ipc-"), "-trusted-hops", "0")
	proxyDone := make(chan *messages.ProxyPollResponse, 1)
	go func() {
		body, _ := (&messages.ProxyPollRequest{Sid: "bin-sid", Type: "standalone", NAT: nat.Unknown, AcceptedRelayPattern: "127.0.0.1$"}).Encode()
		resp, err := http.Post(base+"proxy", "", strings.NewReader(string(body)))
		if err != nil {
			proxyDone <- nil
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r, _ := messages.DecodeProxyPollResponse(b)
		proxyDone <- r
	}()
	waitDebug(t, base, "current snowflakes available: 1\n")
	offer := `{"type":"offer","sdp":"v=0\r\n"}`
	clientDone := make(chan string, 1)
	go func() {
		body, _ := (&messages.ClientPollRequest{Offer: offer, NAT: nat.Unrestricted}).Encode()
		_, out := httpPost(t, base+"client", string(body))
		clientDone <- out
	}()
	pr := <-proxyDone
	if pr == nil || pr.Status != messages.StatusClientMatch || pr.Offer != offer || pr.RelayURL != "ws://127.0.0.1:9/" || pr.NAT != nat.Unrestricted {
		t.Fatalf("proxy got %+v", pr)
	}
	answer := `{"type":"answer","sdp":"v=0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"}`
	ans, _ := (&messages.AnswerRequest{Sid: "bin-sid", Answer: answer}).Encode()
	if code, out := httpPost(t, base+"answer", string(ans)); code != 200 || out != `{"Status":"success"}` {
		t.Fatalf("answer: %d %s", code, out)
	}
	resp, err := messages.DecodeClientPollResponse([]byte(<-clientDone))
	if err != nil || resp.Answer != answer {
		t.Fatalf("client got %+v %v", resp, err)
	}
	// The metrics log gets a block every second here; /metrics serves it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := http.Get(base + "metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if strings.Contains(string(b), "client-snowflake-match-count 8\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics log never showed the match:\n%s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// SIGHUP reloads (nothing to reload here) and keeps serving.
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitDebug(t, base, "current snowflakes available: 0\n")
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("broker did not exit on SIGTERM")
	}
	if p.Cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("exit code %d:\n%s", p.Cmd.ProcessState.ExitCode(), p.Output())
	}
	// At exit the broker wrote the distinct-address report of the
	// partial hour: one proxy and one client address (both loopback).
	names, _ := filepath.Glob(filepath.Join(ipDir, "ipc-*.json"))
	if len(names) != 1 {
		t.Fatalf("ip count reports: %v", names)
	}
	data, err := os.ReadFile(names[0])
	if err != nil {
		t.Fatal(err)
	}
	var rep ipcount.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	if rep.Counts["proxies"]["standalone"] != 1 || rep.Counts["proxies"]["total"] != 1 ||
		rep.Counts["clients"]["http"] != 1 || rep.Counts["clients"]["total"] != 1 {
		t.Fatalf("ip count report %s", data)
	}
}

func waitDebug(t *testing.T, base, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := http.Get(base + "debug")
		if err == nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if strings.Contains(string(b), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/debug never showed %q", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBadFlags checks that configuration errors stop the binary with a
// clear message instead of a panic.
func TestBadFlags(t *testing.T) {
	bin := testenv.Binary(t, "./broker")
	missing := filepath.Join(t.TempDir(), "missing")
	badList := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(badList, []byte(`{"displayName":"x","extra":1}`+"\n"), 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-addr", "127.0.0.1:0"}, "-disable-tls is required"},
		{[]string{"-addr", "127.0.0.1:0", "-disable-tls", "-cert", "x"}, "-cert and -key go together"},
		{[]string{"-addr", "127.0.0.1:0", "-disable-tls", "-disable-geoip", "-bridge-list-path", missing}, "bridge list"},
		{[]string{"-addr", "127.0.0.1:0", "-disable-tls", "-disable-geoip", "-bridge-list-path", badList}, "unknown field"},
		{[]string{"-addr", "127.0.0.1:0", "-disable-tls", "-geoipdb", missing}, "geoip"},
		{[]string{"-addr", "127.0.0.1:0", "-disable-tls", "-disable-geoip", "-poll-interval-filepath", missing}, "poll interval"},
		{[]string{"-addr", "127.0.0.1:0", "-disable-tls", "-disable-geoip", "-broker-sqs-name", "q"}, "-broker-sqs-region"},
		{[]string{"-addr", "bogus", "-disable-tls", "-disable-geoip"}, "listen"},
		{[]string{"-addr", "127.0.0.1:0", "-disable-tls", "-disable-geoip", "-trusted-hops", "-1"}, "-trusted-hops"},
		{[]string{"-addr", "127.0.0.1:0", "-disable-tls", "-disable-geoip", "-ip-count-interval", "0s"}, "-ip-count-interval"},
		{[]string{"-addr", "127.0.0.1:0", "-disable-tls", "-disable-geoip", "-max-connections", "-1"}, "-max-connections"},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, tt.args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tt.want) || strings.Contains(string(out), "panic") {
			t.Errorf("%v: err=%v output:\n%s\nwant %q", tt.args, err, out, tt.want)
		}
	}
}

// echoRelay is a WebSocket server that echoes every message: the stand-in
// for the bridge's Snowflake server, which the upstream proxy both probes
// for reachability and copies the client's bytes to.
func echoRelay(t *testing.T) string {
	t.Helper()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, b); err != nil {
				return
			}
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return fmt.Sprintf("ws://%s/", ln.Addr())
}

// TestUpstreamProxy has Debian's snowflake-proxy 2.5.1 poll our broker. A
// pion offerer in this process plays the client: its offer reaches the
// proxy through the broker, the proxy's answer reaches the client poll, the
// data channel opens, and 1 MiB goes through the proxy to the echo relay
// and back, checked by SHA-256.
func TestUpstreamProxy(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	proxyBin := testenv.LookPath(t, "snowflake-proxy")
	stun, err := stunserver.Listen("127.0.0.1", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer stun.Close()
	relay := echoRelay(t)
	base, _ := startBroker(t, relay)
	testenv.Start(t, "snowflake-proxy-2.5.1", nil, proxyBin,
		"-broker", base, "-relay", relay, "-stun", stun.URL(),
		"-keep-local-addresses", "-allow-non-tls-relay", "-allowed-relay-hostname-pattern", "127.0.0.1$",
		"-capacity", "4", "-nat-retest-interval", "0s")
	// The 2.5.1 proxy cannot probe its NAT here, so it declares unknown
	// and waits in the restricted pool.
	waitDebug(t, base, "current snowflakes available: 1\n")

	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: []webrtc.ICEServer{{URLs: []string{stun.URL()}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dc, err := pc.CreateDataChannel("snowflake-0123456789abcdef", nil)
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 20
	received := make(chan []byte, 1024)
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) { received <- m.Data })

	envelope, err := messages.SessionDescription{Type: "offer", SDP: testenv.GatheredOffer(t, pc).SDP}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Declaring unrestricted puts the client with the restricted pool.
	poll, _ := (&messages.ClientPollRequest{Offer: envelope, NAT: nat.Unrestricted}).Encode()
	code, body := httpPost(t, base+"client", string(poll))
	resp, err := messages.DecodeClientPollResponse([]byte(body))
	if code != 200 || err != nil || resp.Answer == "" {
		t.Fatalf("client poll: %d %s (%v)", code, body, err)
	}
	answer, err := messages.DecodeSessionDescription(resp.Answer)
	if err != nil || answer.Type != "answer" || !strings.Contains(answer.SDP, "a=candidate") {
		t.Fatalf("answer %q: %v", resp.Answer, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-opened:
	case <-time.After(30 * time.Second):
		t.Fatal("data channel did not open")
	}

	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{'b', 'r', 'o', 'k', 'e', 'r'})
	r.Read(data)
	want := sha256.Sum256(data)
	sendErr := make(chan error, 1)
	go func() {
		// Keep the SCTP buffer bounded, as upstream peers do.
		lowWater := make(chan struct{}, 1)
		dc.SetBufferedAmountLowThreshold(256 << 10)
		dc.OnBufferedAmountLow(func() {
			select {
			case lowWater <- struct{}{}:
			default:
			}
		})
		for off := 0; off < size; off += 16 << 10 {
			if err := dc.Send(data[off : off+16<<10]); err != nil {
				sendErr <- err
				return
			}
			for dc.BufferedAmount() > 512<<10 {
				select {
				case <-lowWater:
				case <-time.After(time.Second):
				}
			}
		}
		sendErr <- nil
	}()
	h := sha256.New()
	got := 0
	deadline := time.After(60 * time.Second)
	for got < size {
		select {
		case b := <-received:
			h.Write(b)
			got += len(b)
		case err := <-sendErr:
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			sendErr = nil
		case <-deadline:
			t.Fatalf("echo incomplete: %d of %d bytes", got, size)
		}
	}
	if got != size || [32]byte(h.Sum(nil)) != want {
		t.Fatalf("echo mismatch: %d bytes, sha256 %x want %x", got, h.Sum(nil), want)
	}
}
