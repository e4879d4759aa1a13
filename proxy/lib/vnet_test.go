//go:build !js

package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// fakeBroker is the broker side of the proxy protocol, in memory: tests
// submit offers as clients; proxy polls are held until an offer comes or
// hold passes.
type fakeBroker struct {
	hold     time.Duration
	relayURL string
	offers   chan fakeOffer

	mu      sync.Mutex
	answers map[string]chan string // by Sid
	polls   []*messages.ProxyPollRequest
}

type fakeOffer struct {
	env    string
	relay  string // overrides fakeBroker.relayURL if set
	answer chan string
}

func newFakeBroker(t *testing.T, hold time.Duration, relayURL string) (*fakeBroker, string) {
	b := &fakeBroker{hold: hold, relayURL: relayURL, offers: make(chan fakeOffer), answers: map[string]chan string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/proxy", b.poll)
	mux.HandleFunc("/answer", b.answer)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return b, srv.URL + "/"
}

func (b *fakeBroker) poll(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, messages.MaxBodySize))
	req, err := messages.DecodeProxyPollRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.polls = append(b.polls, req)
	b.mu.Unlock()
	resp := messages.ProxyPollResponse{Status: messages.StatusNoMatch}
	select {
	case o := <-b.offers:
		b.mu.Lock()
		b.answers[req.Sid] = o.answer
		b.mu.Unlock()
		relay := b.relayURL
		if o.relay != "" {
			relay = o.relay
		}
		resp = messages.ProxyPollResponse{Status: messages.StatusClientMatch, Offer: o.env, NAT: nat.Unrestricted, RelayURL: relay}
	case <-time.After(b.hold):
	case <-r.Context().Done():
		return
	}
	out, _ := resp.Encode()
	w.Write(out)
}

func (b *fakeBroker) answer(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, messages.MaxBodySize))
	req, err := messages.DecodeAnswerRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	ch := b.answers[req.Sid]
	delete(b.answers, req.Sid)
	b.mu.Unlock()
	status := messages.StatusClientGone
	if ch != nil {
		ch <- req.Answer
		status = messages.StatusSuccess
	}
	out, _ := (&messages.AnswerResponse{Status: status}).Encode()
	w.Write(out)
}

// echoRelay is a WebSocket server that echoes every message and records the
// client_ip parameters it saw.
type echoRelay struct {
	mu        sync.Mutex
	clientIPs []string
}

func newEchoRelay(t *testing.T) (*echoRelay, string) {
	e := &echoRelay{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.clientIPs = append(e.clientIPs, r.URL.Query().Get("client_ip"))
		e.mu.Unlock()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, b); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return e, "ws" + srv.URL[len("http"):] + "/"
}

// testNet is a virtual Internet: a WAN with the proxy on a public address,
// and a client LAN behind a NAT.
type testNet struct {
	wan              *vnet.Router
	proxyNet, client *vnet.Net
}

func newTestNet(t *testing.T, clientNAT *vnet.NATType) *testNet {
	t.Helper()
	return newShapedTestNet(t, clientNAT, 0)
}

// newShapedTestNet is newTestNet with what reaches the client limited to
// clientRate bytes a second (0: no limit). The queue in front of the
// client is large enough that nothing is dropped.
func newShapedTestNet(t *testing.T, clientNAT *vnet.NATType, clientRate int) *testNet {
	t.Helper()
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "198.51.100.0/24", LoggerFactory: quietLogs()})
	if err != nil {
		t.Fatal(err)
	}
	proxyNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"198.51.100.2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wan.AddNet(proxyNet); err != nil {
		t.Fatal(err)
	}
	lan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", StaticIPs: []string{"198.51.100.100"}, NATType: clientNAT, LoggerFactory: quietLogs()})
	if err != nil {
		t.Fatal(err)
	}
	clientNet, err := vnet.NewNet(&vnet.NetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var clientNIC vnet.NIC = clientNet
	if clientRate > 0 {
		q, err := vnet.NewQueue(clientNet, vnet.NewTBFQueue(8*clientRate, 16<<10, 8<<20))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		clientNIC = q
	}
	if err := lan.AddNet(clientNIC); err != nil {
		t.Fatal(err)
	}
	if err := wan.AddRouter(lan); err != nil {
		t.Fatal(err)
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wan.Stop() })
	return &testNet{wan: wan, proxyNet: proxyNet, client: clientNet}
}

// testClient is a WebRTC client on the virtual network that reaches a proxy
// through the fake broker.
type testClient struct {
	pc *webrtc.PeerConnection
	dc *webrtc.DataChannel
	rw io.ReadWriteCloser
}

func dialClient(ctx context.Context, t *testing.T, n *vnet.Net, b *fakeBroker) (*testClient, error) {
	return dialClientWith(ctx, t, n, b, nil)
}

// dialClientWith is dialClient with the client's WebRTC settings adjusted
// by configure (if not nil).
func dialClientWith(ctx context.Context, t *testing.T, n *vnet.Net, b *fakeBroker, configure func(*webrtc.SettingEngine)) (*testClient, error) {
	var se webrtc.SettingEngine
	se.SetNet(n)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.DetachDataChannels()
	if configure != nil {
		configure(&se)
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	c := &testClient{pc: pc}
	dc, err := pc.CreateDataChannel("snowflake-0123456789abcdef", nil)
	if err != nil {
		pc.Close()
		return nil, err
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		pc.Close()
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		pc.Close()
		return nil, err
	}
	<-gathered
	env, _ := messages.SessionDescription{Type: "offer", SDP: pc.LocalDescription().SDP}.Encode()
	o := fakeOffer{env: env, answer: make(chan string, 1)}
	select {
	case b.offers <- o:
	case <-ctx.Done():
		pc.Close()
		return nil, fmt.Errorf("no proxy polled: %w", ctx.Err())
	}
	var ans string
	select {
	case ans = <-o.answer:
	case <-ctx.Done():
		pc.Close()
		return nil, fmt.Errorf("no answer: %w", ctx.Err())
	}
	sd, err := messages.DecodeSessionDescription(ans)
	if err != nil {
		pc.Close()
		return nil, err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sd.SDP}); err != nil {
		pc.Close()
		return nil, err
	}
	select {
	case <-opened:
	case <-ctx.Done():
		pc.Close()
		return nil, fmt.Errorf("data channel did not open: %w", ctx.Err())
	}
	c.dc = dc
	if c.rw, err = dc.Detach(); err != nil {
		pc.Close()
		return nil, err
	}
	return c, nil
}

func (c *testClient) Close() {
	c.rw.Close()
	c.pc.Close()
}

// exchange sends n random bytes in small messages, reads the echo, and
// compares SHA-256 digests.
func (c *testClient) exchange(t *testing.T, n int) {
	t.Helper()
	testenv.EchoExchange(t, c.rw, n)
}

func vnetConfig(n *vnet.Net, brokerURL, relayURL string) Config {
	return Config{
		BrokerURL:    brokerURL,
		RelayURL:     relayURL,
		PollInterval: MinPollInterval,
		// The relay check is tested on its own; here the default relay
		// may be a name that must never be looked up.
		SkipRelayCheck: true,
		Relay:          RelayPolicy{Pattern: "127.0.0.1$", AllowNonTLS: true, AllowPrivate: true},
		ConfigureWebRTC: func(se *webrtc.SettingEngine) {
			se.SetNet(n)
		},
	}
}

// startProxy runs p until the test ends and checks that Run returns.
func startProxy(t *testing.T, p *Proxy) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return cancel
}

// checkGoroutines fails the test if the goroutine count does not return
// to about the baseline once everything is closed.
func checkGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(20 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= base+2 {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines: %d at start, %d after close\n%s", base, n, buf)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func TestVNetRelayBehindRestrictedNAT(t *testing.T) {
	// Registered first, so it runs last: after the proxy, servers and
	// virtual network are closed.
	checkGoroutines(t)
	// Port-restricted cone NAT in front of the client: only the proxy's
	// host candidate is reachable, the client reaches it by peer-reflexive
	// candidates.
	tn := newTestNet(t, &vnet.NATType{
		MappingBehavior:   vnet.EndpointIndependent,
		FilteringBehavior: vnet.EndpointAddrPortDependent,
	})
	relay, relayURL := newEchoRelay(t)
	b, brokerURL := newFakeBroker(t, time.Second, relayURL)
	cfg := vnetConfig(tn.proxyNet, brokerURL, "wss://unused.example/")
	cfg.Capacity = 2
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cancel := startProxy(t, p)

	ctx, cc := context.WithTimeout(context.Background(), 30*time.Second)
	defer cc()
	c, err := dialClient(ctx, t, tn.client, b)
	if err != nil {
		t.Fatal(err)
	}
	c.exchange(t, 2<<20)
	if up, down := p.Stats().BytesUp.Load(), p.Stats().BytesDown.Load(); up != 2<<20 || down < 2<<20 {
		t.Errorf("stats: up %d down %d", up, down)
	}
	relay.mu.Lock()
	ips := relay.clientIPs
	relay.mu.Unlock()
	// The client's offer only has LAN candidates (10.0.0.x), which are not
	// passed on.
	if len(ips) != 1 || ips[0] != "" {
		t.Errorf("relay saw client_ip %q, want one connection without it", ips)
	}

	// The client goes away: the slot must come back.
	c.Close()
	waitFor(t, "token returned", func() bool { return p.tokens.count() <= cfg.Capacity-1 && p.Stats().Active.Load() == 0 })
	b.mu.Lock()
	for _, poll := range b.polls {
		if poll.Version != "1.3" || poll.Type != "standalone" || poll.AcceptedRelayPattern != "127.0.0.1$" || poll.Clients%8 != 0 {
			t.Errorf("bad poll %+v", poll)
		}
	}
	b.mu.Unlock()
	cancel()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The capacity case: 20 clients arrive at once. With 20 polls outstanding
// all are matched within one poll cycle (the broker hold).
func TestVNetBurstOfClients(t *testing.T) {
	checkGoroutines(t)
	const clients = 20
	tn := newTestNet(t, &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent})
	_, relayURL := newEchoRelay(t)
	b, brokerURL := newFakeBroker(t, 10*time.Second, relayURL)
	cfg := vnetConfig(tn.proxyNet, brokerURL, "")
	cfg.Capacity = clients
	cfg.ConcurrentPolls = clients
	// The clients exchange one after another; on a loaded machine the last
	// one's turn can come after the default idle timeout.
	cfg.IdleTimeout = 5 * time.Minute
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startProxy(t, p)
	// Let every poller reach the broker (they are staggered over one poll
	// interval).
	waitFor(t, "polls outstanding", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.polls) >= clients })

	start := time.Now()
	ctx, cc := context.WithTimeout(context.Background(), 60*time.Second)
	defer cc()
	var wg sync.WaitGroup
	conns := make([]*testClient, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i], errs[i] = dialClient(ctx, t, tn.client, b)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	b.mu.Lock()
	polls := len(b.polls)
	b.mu.Unlock()
	t.Logf("%d clients connected in %v with %d polls", clients, elapsed, polls)
	for _, c := range conns {
		c.exchange(t, 64<<10)
	}
	if m := p.Stats().Matches.Load(); m != clients {
		t.Errorf("matches = %d, want %d", m, clients)
	}
	if elapsed > 10*time.Second {
		t.Errorf("connecting %d clients took %v, more than one poll cycle", clients, elapsed)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "all slots returned", func() bool { return p.Stats().Active.Load() == 0 })
}

func quietLogs() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelError
	return f
}

// Hostile or broken offers from the broker: each is dropped with the slot
// returned, and nothing leaks.
func TestBadOffers(t *testing.T) {
	checkGoroutines(t)
	tn := newTestNet(t, nil)
	newEchoRelay(t)
	b, brokerURL := newFakeBroker(t, time.Second, "")
	cfg := vnetConfig(tn.proxyNet, brokerURL, "")
	cfg.Relay = RelayPolicy{Pattern: "127.0.0.1$"} // no ws, no private addresses
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	cfg.Capacity = 1
	cfg.ConcurrentPolls = 1
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startProxy(t, p)
	validOffer := func() string {
		var se webrtc.SettingEngine
		se.SetNet(tn.client)
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		pc.CreateDataChannel("x", nil)
		o, _ := pc.CreateOffer(nil)
		env, _ := messages.SessionDescription{Type: "offer", SDP: o.SDP}.Encode()
		return env
	}()
	huge, _ := messages.SessionDescription{Type: "offer", SDP: "v=0\r\n" + string(bytes.Repeat([]byte("a=x\r\n"), 6000))}.Encode()
	for i, tc := range []fakeOffer{
		{env: validOffer, relay: "ws://127.0.0.1:1/"},          // non-TLS
		{env: validOffer, relay: "wss://127.0.0.1/"},           // loopback
		{env: validOffer, relay: "wss://relay.example/"},       // off pattern
		{env: validOffer, relay: "wss://10.0.0.1/x?127.0.0.1"}, // private
		{env: `{"type":"offer"}`},                              // no SDP
		{env: "not json"},                                      // garbage
		{env: `{"type":"answer","sdp":"v=0\r\n"}`},             // wrong type
		{env: huge}, // large nonsense SDP
	} {
		failed := p.Stats().Failed.Load()
		tc.answer = make(chan string, 1)
		select {
		case b.offers <- tc:
		case <-time.After(30 * time.Second):
			t.Fatalf("case %d: proxy did not poll again (slot not returned?)", i)
		}
		waitFor(t, fmt.Sprintf("offer %d to be refused", i), func() bool { return p.Stats().Failed.Load() == failed+1 })
		select {
		case a := <-tc.answer:
			t.Errorf("case %d: proxy answered a bad offer: %q", i, a)
		default:
		}
	}
	waitFor(t, "slot returned", func() bool { return p.tokens.count() <= 1 })
}

// A broker that is down or answers garbage makes the proxy back off, not
// spin, and not leak.
func TestBrokerFailures(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		n := hits
		mu.Unlock()
		switch n % 3 {
		case 0:
			http.Error(w, "boom", http.StatusInternalServerError)
		case 1:
			w.Write([]byte("{garbage"))
		default:
			w.Write(bytes.Repeat([]byte("x"), messages.MaxBodySize+10))
		}
	}))
	defer srv.Close()
	p, err := New(Config{BrokerURL: srv.URL + "/", PollInterval: MinPollInterval, ConcurrentPolls: 1, SkipRelayCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// Backoff doubles from 2 s: polls at about 0, 2, 6 s.
	if e := p.Stats().PollErrors.Load(); e < 2 || e > 4 {
		t.Errorf("poll errors in 7 s = %d, want 2..4 (backoff)", e)
	}
	if p.tokens.count() != 0 {
		t.Errorf("tokens held after Run: %d", p.tokens.count())
	}
}

// testWriter sends log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// A relay that goes silent, or sends a message over the read limit, ends
// the client's connection: the data channel closes, the slot is returned.
//
// Only the silent relay has a short idle timeout. The oversize message
// reaches the limit after the proxy has passed 1 MiB to the client over
// SCTP on the virtual network, and with the race detector on a loaded
// machine the proxy's reads from the relay can pause for over a second
// while that drains: a 1 s idle timeout then ended the connection first.
func TestRelayMisbehaves(t *testing.T) {
	for _, tc := range []struct {
		name  string
		relay func(ctx context.Context, c *websocket.Conn)
		idle  time.Duration
		cause string
	}{
		{"silent", readUntilError, time.Second, errIdle.Error()},
		{"oversize message", func(ctx context.Context, c *websocket.Conn) {
			c.Write(ctx, websocket.MessageBinary, make([]byte, wsReadLimit+1))
			readUntilError(ctx, c)
		}, time.Minute, "read from relay"},
		{"closes", func(ctx context.Context, c *websocket.Conn) {
			c.Write(ctx, websocket.MessageBinary, []byte("bye"))
			c.Close(websocket.StatusNormalClosure, "")
		}, time.Minute, "closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			tn := newTestNet(t, nil)
			srv, relayURL := startWSRelay(tc.relay)
			defer srv.Close()
			var logs logBuffer
			p, c := startOneClient(t, tn, relayURL, func(cfg *Config) {
				cfg.IdleTimeout = tc.idle
				cfg.ConcurrentPolls = 1
				cfg.Logger = logs.logger()
			})
			c.rw.Write([]byte("hello"))
			// The client sees its channel end.
			buf := make([]byte, 1<<16)
			for {
				if _, err := c.rw.Read(buf); err != nil {
					break
				}
			}
			waitFor(t, "slot returned", func() bool { return p.Stats().Active.Load() == 0 && p.tokens.count() <= 1 })
			waitFor(t, "disconnect logged", func() bool { return logs.contains("client disconnected", tc.cause) })
		})
	}
}

// A client on a slow link (100 KB/s) downloads. The proxy stops reading the
// relay whenever the client's data channel is above its high-water mark
// (512 KiB), until it drains to half of that: 2.6 s at this rate, longer
// than the 1.5 s idle timeout here. The client is slow, not gone, so it
// must keep its connection and receive everything.
func TestRelaySlowClient(t *testing.T) {
	checkGoroutines(t)
	const rate = 100_000
	tn := newShapedTestNet(t, nil, rate)
	want := make([]byte, 900<<10)
	rand.Read(want)
	srv, relayURL := startWSRelay(func(ctx context.Context, c *websocket.Conn) {
		for b := want; len(b) > 0; {
			n := min(len(b), 32<<10)
			if err := c.Write(ctx, websocket.MessageBinary, b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
		readUntilError(ctx, c)
	})
	defer srv.Close()
	var logs logBuffer
	_, c := startOneClient(t, tn, relayURL, func(cfg *Config) {
		cfg.IdleTimeout = 1500 * time.Millisecond
		cfg.ConcurrentPolls = 1
		cfg.Logger = logs.logger()
	})
	c.rw.Write([]byte("hello"))
	start := time.Now()
	var got bytes.Buffer
	buf := make([]byte, 1<<16)
	for got.Len() < len(want) {
		n, err := c.rw.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("after %d of %d bytes in %v: %v; proxy log:\n%s", got.Len(), len(want), time.Since(start), err, logs.String())
		}
	}
	t.Logf("%d bytes in %v", got.Len(), time.Since(start).Round(time.Millisecond))
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("the client received other bytes than the relay sent")
	}
}

// logBuffer collects a proxy's log output for a test to search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// contains reports whether the log holds every one of subs.
func (l *logBuffer) contains(subs ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, sub := range subs {
		if !bytes.Contains(l.buf.Bytes(), []byte(sub)) {
			return false
		}
	}
	return true
}

// startWSRelay starts a WebSocket relay on loopback that hands every
// connection to serve, and returns the server (the caller closes it) and
// its ws:// URL.
func startWSRelay(serve func(ctx context.Context, c *websocket.Conn)) (*httptest.Server, string) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		serve(r.Context(), c)
	}))
	return srv, "ws" + srv.URL[len("http"):] + "/"
}

// readUntilError reads and drops messages until the connection fails.
func readUntilError(ctx context.Context, c *websocket.Conn) {
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return
		}
	}
}

// startOneClient runs a proxy with room for one client on tn, its broker
// sending clients to relayURL, and connects one client through it. configure
// (if not nil) adjusts the proxy's configuration first. The test's cleanup
// closes the client, then stops the proxy.
func startOneClient(t *testing.T, tn *testNet, relayURL string, configure func(*Config)) (*Proxy, *testClient) {
	t.Helper()
	return startOneClientWith(t, tn, relayURL, configure, nil)
}

// startOneClientWith is startOneClient with the client's WebRTC settings
// adjusted by configureClient (if not nil).
func startOneClientWith(t *testing.T, tn *testNet, relayURL string, configure func(*Config), configureClient func(*webrtc.SettingEngine)) (*Proxy, *testClient) {
	t.Helper()
	b, brokerURL := newFakeBroker(t, time.Second, relayURL)
	cfg := vnetConfig(tn.proxyNet, brokerURL, "")
	cfg.Capacity = 1
	if configure != nil {
		configure(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startProxy(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialClientWith(ctx, t, tn.client, b, configureClient)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return p, c
}

// The proxy polls only while its default relay is reachable.
func TestRelayGate(t *testing.T) {
	checkGoroutines(t)
	_, relayURL := newEchoRelay(t)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := "ws" + down.URL[len("http"):] + "/"
	down.Close() // nothing listens there now
	for _, tc := range []struct {
		name  string
		relay string
		polls bool
	}{{"reachable", relayURL, true}, {"unreachable", downURL, false}} {
		t.Run(tc.name, func(t *testing.T) {
			b, brokerURL := newFakeBroker(t, 200*time.Millisecond, "")
			p, err := New(Config{BrokerURL: brokerURL, RelayURL: tc.relay, PollInterval: MinPollInterval, ConcurrentPolls: 1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			p.Run(ctx)
			b.mu.Lock()
			n := len(b.polls)
			b.mu.Unlock()
			if (n > 0) != tc.polls {
				t.Errorf("%d polls with relay %s", n, tc.name)
			}
		})
	}
}

// The relay is down when a client arrives: the client's channel is closed
// and the slot comes back.
func TestRelayDown(t *testing.T) {
	checkGoroutines(t)
	tn := newTestNet(t, nil)
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := "ws" + gone.URL[len("http"):] + "/"
	gone.Close()
	p, c := startOneClient(t, tn, goneURL, nil)
	buf := make([]byte, 100)
	if _, err := c.rw.Read(buf); err == nil {
		t.Fatal("read succeeded with the relay down")
	}
	waitFor(t, "failure counted and slot returned", func() bool {
		return p.Stats().Failed.Load() == 1 && p.tokens.count() <= 1 && p.Stats().Active.Load() == 0
	})
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// A relay that sends its last messages and closes normally at once: the
// client must still receive every byte before its channel ends. The
// teardown closes the peer connection, which drops what SCTP has not yet
// delivered, so the proxy must let the data channel deliver first.
func TestRelayCloseDeliversLastBytes(t *testing.T) {
	checkGoroutines(t)
	tn := newTestNet(t, nil)
	const msgs, size = 64, 64 << 10
	srv, relayURL := startWSRelay(func(ctx context.Context, c *websocket.Conn) {
		msg := make([]byte, size)
		for range msgs {
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				return
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
	defer srv.Close()
	_, c := startOneClient(t, tn, relayURL, nil)
	c.rw.Write([]byte("hello"))
	got := 0
	buf := make([]byte, 1<<16)
	for {
		n, err := c.rw.Read(buf)
		got += n
		if err != nil {
			break
		}
	}
	if got != msgs*size {
		t.Errorf("client received %d bytes of the %d the relay sent before closing", got, msgs*size)
	}
}
