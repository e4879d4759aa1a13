package broker

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/amp"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
)

// TestRendezvous runs a full exchange over HTTP: proxy poll, client poll,
// answer, and checks every field that crosses the broker.
func TestRendezvous(t *testing.T) {
	b, srv := newTestBroker(t, func(c *Config) { c.ProxyPollTimeout = 5 * time.Second; c.ClientTimeout = 5 * time.Second })
	proxy := startProxyPoll(t, srv, "sid-1", nat.Unrestricted, 8)
	waitWaiting(t, b, 1)

	client := make(chan httpResult, 1)
	go func() { client <- post(t, srv.URL+"/client", clientPollBody(t, nat.Restricted)) }()

	pr := <-proxy
	if pr == nil {
		t.Fatal("proxy poll failed")
	}
	want := messages.ProxyPollResponse{Status: messages.StatusClientMatch, Offer: testOffer, NAT: nat.Restricted,
		NextPoll: 20000, RelayURL: DefaultBridgeURL}
	if *pr != want {
		t.Fatalf("proxy got %+v, want %+v", pr, want)
	}
	ans, _ := (&messages.AnswerRequest{Sid: "sid-1", Answer: testAnswer}).Encode()
	if r := post(t, srv.URL+"/answer", string(ans)); r.body != `{"Status":"success"}` {
		t.Fatalf("answer: %d %s", r.status, r.body)
	}
	cr := <-client
	resp, err := messages.DecodeClientPollResponse([]byte(cr.body))
	if err != nil || resp.Answer != testAnswer {
		t.Fatalf("client got %d %s (%v)", cr.status, cr.body, err)
	}
	// The match is forgotten once the client has its answer.
	if r := post(t, srv.URL+"/answer", string(ans)); r.body != `{"Status":"client gone"}` {
		t.Fatalf("second answer: %s", r.body)
	}
}

// TestSecondAnswer checks that of two answers for one matched Sid only the
// first is delivered, and that the second proxy is told so ("client gone",
// as for an unknown Sid) and not counted as a delivered answer. The match
// is made on the engine, without a client poll, so that it stays
// registered for both answers.
func TestSecondAnswer(t *testing.T) {
	b, srv := newTestBroker(t, nil)
	if !b.pools.add(&waiter{sid: "dup", proxyType: "standalone", natType: nat.Unrestricted, ch: make(chan offer, 1)}, 0) {
		t.Fatal("add refused")
	}
	w, m := b.pools.take(nat.Restricted)
	if w == nil {
		t.Fatal("proxy not taken")
	}
	ans, _ := (&messages.AnswerRequest{Sid: "dup", Answer: testAnswer}).Encode()
	if r := post(t, srv.URL+"/answer", string(ans)); r.status != 200 || r.body != `{"Status":"success"}` {
		t.Fatalf("first answer: %d %s", r.status, r.body)
	}
	other, _ := (&messages.AnswerRequest{Sid: "dup", Answer: strings.Replace(testAnswer, "198.51.100.9", "198.51.100.10", 1)}).Encode()
	if r := post(t, srv.URL+"/answer", string(other)); r.status != 200 || r.body != `{"Status":"client gone"}` {
		t.Fatalf("second answer: %d %s", r.status, r.body)
	}
	if a := <-m.answer; a != testAnswer {
		t.Fatalf("client would get %q, want the first answer", a)
	}
	// Once the client has taken the answer, a late one still finds the
	// match registered (until the client poll ends) but nobody to read it.
	if r := post(t, srv.URL+"/answer", string(other)); r.status != 200 || r.body != `{"Status":"client gone"}` {
		t.Fatalf("answer after the first was read: %d %s", r.status, r.body)
	}
	success, gone := rawCount(b.metrics.proxyAnswer, "standalone", answerSuccess), rawCount(b.metrics.proxyAnswer, "standalone", answerClientGone)
	if success != 1 || gone != 2 {
		t.Fatalf("answers counted: %d success, %d client gone; want 1, 2", success, gone)
	}
}

func TestClientTimeout(t *testing.T) {
	b, srv := newTestBroker(t, func(c *Config) { c.ProxyPollTimeout = 5 * time.Second })
	proxy := startProxyPoll(t, srv, "sid-t", nat.Unrestricted, 0)
	waitWaiting(t, b, 1)
	start := time.Now()
	r := post(t, srv.URL+"/client", clientPollBody(t, nat.Unknown))
	if r.body != `{"error":"timed out waiting for answer!"}` {
		t.Fatalf("client got %s", r.body)
	}
	if d := time.Since(start); d < testClientTimeout || d > testClientTimeout+5*time.Second {
		t.Fatalf("timed out after %v, want about %v", d, testClientTimeout)
	}
	if pr := <-proxy; pr == nil || pr.Status != messages.StatusClientMatch {
		t.Fatalf("proxy got %+v", pr)
	}
	// The late answer finds nobody.
	ans, _ := (&messages.AnswerRequest{Sid: "sid-t", Answer: testAnswer}).Encode()
	if r := post(t, srv.URL+"/answer", string(ans)); r.body != `{"Status":"client gone"}` {
		t.Fatalf("late answer: %s", r.body)
	}
}

// TestPoolRules checks the NAT pool rules and least-loaded ordering against
// the engine directly.
func TestPoolRules(t *testing.T) {
	type proxy struct {
		sid     string
		natType nat.Type
		clients int
	}
	tests := []struct {
		name    string
		proxies []proxy
		client  nat.Type
		want    string // Sid taken, "" for none
	}{
		{"restricted client needs unrestricted proxy", []proxy{{"r", nat.Restricted, 0}}, nat.Restricted, ""},
		{"unknown client needs unrestricted proxy", []proxy{{"u", nat.Unknown, 0}}, nat.Unknown, ""},
		{"unknown client gets unrestricted", []proxy{{"r", nat.Restricted, 0}, {"U", nat.Unrestricted, 0}}, nat.Unknown, "U"},
		{"unrestricted client prefers restricted pool", []proxy{{"U", nat.Unrestricted, 0}, {"r", nat.Restricted, 16}}, nat.Unrestricted, "r"},
		{"unknown proxies are in the restricted pool", []proxy{{"U", nat.Unrestricted, 0}, {"k", nat.Unknown, 0}}, nat.Unrestricted, "k"},
		{"unrestricted client falls back", []proxy{{"U", nat.Unrestricted, 0}}, nat.Unrestricted, "U"},
		{"least loaded first", []proxy{{"a", nat.Unrestricted, 16}, {"b", nat.Unrestricted, 8}, {"c", nat.Unrestricted, 24}}, nat.Restricted, "b"},
		{"ties: first come", []proxy{{"a", nat.Unrestricted, 8}, {"b", nat.Unrestricted, 8}}, nat.Restricted, "a"},
		{"empty", nil, nat.Unrestricted, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPools()
			for _, px := range tt.proxies {
				if !p.add(&waiter{sid: px.sid, proxyType: "standalone", natType: px.natType, clients: px.clients, ch: make(chan offer, 1)}, 0) {
					t.Fatal("add refused")
				}
			}
			w, m := p.take(tt.client)
			got := ""
			if w != nil {
				got = w.sid
				if _, ok := p.answer(w.sid, "a"); !ok {
					t.Fatal("match not registered")
				}
				if a := <-m.answer; a != "a" {
					t.Fatalf("answer %q", a)
				}
			}
			if got != tt.want {
				t.Fatalf("took %q, want %q", got, tt.want)
			}
			if n := p.waiting(); n != len(tt.proxies)-len(tt.want) {
				t.Fatalf("%d left waiting", n)
			}
		})
	}
}

func TestHeapOrderRandomised(t *testing.T) {
	// Compare the heap against a naive minimum search.
	p := newPools()
	loads := []int{40, 8, 0, 16, 0, 32, 8, 24, 56, 0, 48, 8}
	for i, c := range loads {
		p.add(&waiter{sid: string(rune('a' + i)), natType: nat.Unrestricted, clients: c, ch: make(chan offer, 1)}, 0)
	}
	remaining := append([]int(nil), loads...)
	for range loads {
		w, _ := p.take(nat.Restricted)
		minIdx := 0
		for i, c := range remaining {
			if c >= 0 && (remaining[minIdx] < 0 || c < remaining[minIdx]) {
				minIdx = i
			}
		}
		if w.clients != remaining[minIdx] || w.sid != string(rune('a'+minIdx)) {
			t.Fatalf("took %s(%d), want %c(%d)", w.sid, w.clients, 'a'+minIdx, remaining[minIdx])
		}
		remaining[minIdx] = -1
	}
}

func TestMaxWaitingProxies(t *testing.T) {
	b, srv := newTestBroker(t, func(c *Config) { c.MaxWaitingProxies = 1; c.ProxyPollTimeout = 5 * time.Second })
	p1 := startProxyPoll(t, srv, "a", nat.Unrestricted, 0)
	waitWaiting(t, b, 1)
	start := time.Now()
	r := post(t, srv.URL+"/proxy", proxyPollBody(t, "b", nat.Unrestricted, 0, "snowflake.torproject.net$"))
	if !strings.Contains(r.body, `"Status":"no match"`) || time.Since(start) > 4*time.Second {
		t.Fatalf("over-limit poll: %s after %v", r.body, time.Since(start))
	}
	b.Close()
	if pr := <-p1; pr == nil || pr.Status != messages.StatusNoMatch {
		t.Fatalf("held poll after Close: %+v", pr)
	}
}

// TestProxyDisconnect checks that a proxy that goes away while held is
// never matched: its parked connection is found closed at match time.
func TestProxyDisconnect(t *testing.T) {
	b, srv := newTestBroker(t, func(c *Config) { c.ProxyPollTimeout = 5 * time.Second })
	abandonParkedPoll(t, b, srv.URL, http.DefaultClient)
	if r := post(t, srv.URL+"/client", clientPollBody(t, nat.Unrestricted)); r.body != `{"error":"no snowflake proxies currently available"}` {
		t.Fatalf("client got %s", r.body)
	}
	if n := b.Waiting(); n != 0 {
		t.Fatalf("%d proxies still waiting", n)
	}
	// The poll ended without a client: it counts as idle, like one
	// whose hold expired.
	b.metrics.mu.Lock()
	idle := b.metrics.interval.idle
	b.metrics.mu.Unlock()
	if idle != 1 {
		t.Fatalf("idle count %d, want 1", idle)
	}
}

func TestLegacyClient(t *testing.T) {
	b, srv := newTestBroker(t, func(c *Config) { c.ProxyPollTimeout = 5 * time.Second })
	// No proxy: 503.
	if r := post(t, srv.URL+"/client", testOffer); r.status != http.StatusServiceUnavailable {
		t.Fatalf("no proxy: %d %s", r.status, r.body)
	}
	// Bad NAT header: 400.
	if r := do(t, http.MethodPost, srv.URL+"/client", []byte(testOffer), map[string]string{"Snowflake-NAT-Type": "cone"}); r.status != 400 {
		t.Fatalf("bad NAT: %d", r.status)
	}
	// Matched but unanswered: 504.
	p := startProxyPoll(t, srv, "l1", nat.Unrestricted, 0)
	waitWaiting(t, b, 1)
	if r := post(t, srv.URL+"/client", testOffer); r.status != http.StatusGatewayTimeout {
		t.Fatalf("timeout: %d %s", r.status, r.body)
	}
	<-p
	// Matched and answered: 200 with the raw answer. The NAT header puts
	// the client in the restricted pool's favour.
	p = startProxyPoll(t, srv, "l2", nat.Restricted, 0)
	waitWaiting(t, b, 1)
	res := make(chan httpResult, 1)
	go func() {
		res <- do(t, http.MethodPost, srv.URL+"/client", []byte(testOffer), map[string]string{"Snowflake-NAT-Type": "unrestricted"})
	}()
	pr := <-p
	if pr == nil || pr.Offer != testOffer || pr.NAT != nat.Unrestricted {
		t.Fatalf("proxy got %+v", pr)
	}
	ans, _ := (&messages.AnswerRequest{Sid: "l2", Answer: testAnswer}).Encode()
	post(t, srv.URL+"/answer", string(ans))
	if r := <-res; r.status != 200 || r.body != testAnswer {
		t.Fatalf("legacy answer: %d %s", r.status, r.body)
	}
}

// TestAMP encodes a client poll into an AMP path as a client does, has a
// proxy answer it, and de-armors the HTML response.
func TestAMP(t *testing.T) {
	b, srv := newTestBroker(t, func(c *Config) { c.ProxyPollTimeout = 5 * time.Second; c.ClientTimeout = 5 * time.Second })
	p := startProxyPoll(t, srv, "amp-1", nat.Unrestricted, 0)
	waitWaiting(t, b, 1)
	res := make(chan httpResult, 1)
	path := "/amp/client/" + amp.EncodePath([]byte(clientPollBody(t, nat.Unknown)))
	go func() { res <- do(t, http.MethodGet, srv.URL+path, nil, nil) }()
	pr := <-p
	if pr == nil || pr.Offer != testOffer {
		t.Fatalf("proxy got %+v", pr)
	}
	ans, _ := (&messages.AnswerRequest{Sid: "amp-1", Answer: testAnswer}).Encode()
	post(t, srv.URL+"/answer", string(ans))
	r := <-res
	if r.status != 200 || r.header.Get("Content-Type") != "text/html" || r.header.Get("Cache-Control") != "max-age=15" {
		t.Fatalf("AMP response %d %v", r.status, r.header)
	}
	if !strings.HasPrefix(r.body, "<!doctype html>") {
		t.Fatalf("not an HTML document: %.80q", r.body)
	}
	payload, err := amp.DecodeArmor(strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := messages.DecodeClientPollResponse(payload)
	if err != nil || resp.Answer != testAnswer {
		t.Fatalf("de-armored %s (%v)", payload, err)
	}
}

func TestAMPErrors(t *testing.T) {
	_, srv := newTestBroker(t, nil)
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		path, want string
	}{
		{"/amp/client/", `{"error":"cannot decode URL path"}`},
		{"/amp/client/1abc/" + enc("1.0\n{}"), `{"error":"cannot decode URL path"}`},
		{"/amp/client/0abc/" + enc("x") + "=", `{"error":"cannot decode URL path"}`},
		{"/amp/client/0abc", `{"error":"cannot decode URL path"}`},
		{"/amp/client/0abc/" + enc("2.0\n{}"), `{"error":"unsupported message version"}`},
		{"/amp/client/0a/b/c/" + enc(clientPollBody(t, nat.Unknown)), `{"error":"no snowflake proxies currently available"}`},
	}
	for _, tt := range tests {
		r := do(t, http.MethodGet, srv.URL+tt.path, nil, nil)
		if r.status != 200 {
			t.Errorf("%s: status %d", tt.path, r.status)
			continue
		}
		payload, err := amp.DecodeArmor(strings.NewReader(r.body))
		if err != nil || string(payload) != tt.want {
			t.Errorf("%s: %s (%v), want %s", tt.path, payload, err, tt.want)
		}
	}
}

// TestConcurrentMatching runs many proxies and clients at once under the
// race detector, proxies first (clients take waiting proxies) and clients
// first (proxies go to waiting clients): every client gets the answer of
// its own proxy, and nobody is left waiting.
func TestConcurrentMatching(t *testing.T) {
	for _, clientsFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("clients first %v", clientsFirst), func(t *testing.T) {
			b, err := New(Config{AllowedRelayPattern: "x$", ProxyPollTimeout: 5 * time.Second, ClientTimeout: 5 * time.Second, ClientWait: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			const n = 200
			var wg sync.WaitGroup
			ctx := context.Background()
			var matched atomic.Int32
			proxies := func() {
				for i := range n {
					wg.Go(func() {
						sid := "p" + string(rune(0x100+i))
						res := b.proxyPoll(ctx, &messages.ProxyPollRequest{Sid: sid, Version: "1.3", NAT: nat.Unrestricted, AcceptedRelayPattern: "x$"}, netip.Addr{})
						if res.Status != messages.StatusClientMatch {
							t.Errorf("proxy %d got %+v", i, res)
							return
						}
						b.answer(sid, "answer-for:"+res.Offer)
					})
				}
			}
			clients := func() {
				for i := range n {
					wg.Go(func() {
						o := "offer-" + string(rune(0x100+i))
						resp := b.ClientPoll(ctx, &messages.ClientPollRequest{Offer: o, NAT: nat.Unknown, Fingerprint: messages.DefaultBridgeFingerprint}, MethodHTTP, netip.Addr{})
						if resp.Answer != "answer-for:"+o {
							t.Errorf("client %d got %+v", i, resp)
							return
						}
						matched.Add(1)
					})
				}
			}
			if clientsFirst {
				clients()
				waitClients(t, b, n)
				proxies()
			} else {
				proxies()
				waitWaiting(t, b, n)
				clients()
			}
			wg.Wait()
			if matched.Load() != n || b.Waiting() != 0 || b.pools.waitingClients() != 0 {
				t.Fatalf("matched %d of %d; %d proxies and %d clients still waiting", matched.Load(), n, b.Waiting(), b.pools.waitingClients())
			}
		})
	}
}

// TestClientWaitsForProxy: a client that finds no proxy is matched with
// the first that polls within the client wait, over HTTP.
func TestClientWaitsForProxy(t *testing.T) {
	b, srv := newTestBroker(t, func(c *Config) { c.ClientWait = 5 * time.Second; c.ClientTimeout = 5 * time.Second })
	client := make(chan httpResult, 1)
	go func() { client <- post(t, srv.URL+"/client", clientPollBody(t, nat.Restricted)) }()
	waitClients(t, b, 1)
	if r := do(t, http.MethodGet, srv.URL+"/debug", nil, nil); !strings.Contains(r.body, "clients waiting for a proxy: 1\n") {
		t.Errorf("/debug does not show the waiting client:\n%s", r.body)
	}
	// A restricted proxy cannot serve a restricted client: it waits in
	// the pool while the client keeps waiting.
	restricted := startProxyPoll(t, srv, "sid-r", nat.Restricted, 0)
	waitWaiting(t, b, 1)
	proxy := startProxyPoll(t, srv, "sid-u", nat.Unrestricted, 0)
	pr := <-proxy
	if pr == nil || pr.Status != messages.StatusClientMatch || pr.Offer != testOffer {
		t.Fatalf("proxy got %+v", pr)
	}
	ans, _ := (&messages.AnswerRequest{Sid: "sid-u", Answer: testAnswer}).Encode()
	if r := post(t, srv.URL+"/answer", string(ans)); r.body != `{"Status":"success"}` {
		t.Fatalf("answer: %d %s", r.status, r.body)
	}
	cr := <-client
	if resp, err := messages.DecodeClientPollResponse([]byte(cr.body)); err != nil || resp.Answer != testAnswer {
		t.Fatalf("client got %d %s (%v)", cr.status, cr.body, err)
	}
	if n := b.pools.waitingClients(); n != 0 {
		t.Fatalf("%d clients still waiting", n)
	}
	if pr := <-restricted; pr == nil || pr.Status != messages.StatusNoMatch {
		t.Fatalf("restricted proxy got %+v", pr)
	}
}

// TestClientWaitEnds: without a proxy the client is told "no proxies"
// after the client wait, or at once with a negative wait; a broker
// closing releases a waiting client.
func TestClientWaitEnds(t *testing.T) {
	for _, tt := range []struct {
		name     string
		wait     time.Duration
		min, max time.Duration
	}{
		{"waits", 300 * time.Millisecond, 300 * time.Millisecond, 3 * time.Second},
		{"at once", -1, 0, 200 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, srv := newTestBroker(t, func(c *Config) { c.ClientWait = tt.wait })
			start := time.Now()
			r := post(t, srv.URL+"/client", clientPollBody(t, nat.Unrestricted))
			d := time.Since(start)
			if r.body != `{"error":"no snowflake proxies currently available"}` {
				t.Fatalf("client got %s", r.body)
			}
			if d < tt.min || d > tt.max {
				t.Fatalf("answered after %v, want %v to %v", d, tt.min, tt.max)
			}
			if n := b.pools.waitingClients(); n != 0 {
				t.Fatalf("%d clients still waiting", n)
			}
		})
	}
	t.Run("close", func(t *testing.T) {
		b, err := New(Config{AllowedRelayPattern: "x$", ClientWait: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan *messages.ClientPollResponse, 1)
		go func() {
			done <- b.ClientPoll(context.Background(), &messages.ClientPollRequest{Offer: "o", NAT: nat.Unknown, Fingerprint: messages.DefaultBridgeFingerprint}, MethodHTTP, netip.Addr{})
		}()
		waitClients(t, b, 1)
		b.Close()
		select {
		case resp := <-done:
			if resp.Error != messages.ErrStrNoProxies {
				t.Fatalf("client got %+v", resp)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close left the client waiting")
		}
	})
}

// TestWaitingClientOrder checks which waiting client a new proxy goes to,
// against the engine directly: unrestricted proxies go to the oldest client
// that needs one, else the oldest; restricted-pool proxies only to
// unrestricted clients; a proxy nobody can use goes to the pool.
func TestWaitingClientOrder(t *testing.T) {
	tests := []struct {
		name    string
		clients []nat.Type // in arrival order
		proxy   nat.Type
		want    int // index of the client served, -1: the proxy is pooled
	}{
		{"unrestricted proxy: oldest needing client", []nat.Type{nat.Unrestricted, nat.Restricted, nat.Unknown}, nat.Unrestricted, 1},
		{"unrestricted proxy: oldest otherwise", []nat.Type{nat.Unrestricted, nat.Unrestricted}, nat.Unrestricted, 0},
		{"restricted proxy: unrestricted client", []nat.Type{nat.Restricted, nat.Unrestricted}, nat.Restricted, 1},
		{"unknown proxy: unrestricted client", []nat.Type{nat.Unknown, nat.Unrestricted}, nat.Unknown, 1},
		{"restricted proxy: nobody", []nat.Type{nat.Restricted, nat.Unknown}, nat.Restricted, -1},
		{"no client", nil, nat.Unrestricted, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPools()
			var waits []*clientWait
			for _, c := range tt.clients {
				w, _, cw := p.takeOrWait(c)
				if w != nil || cw == nil {
					t.Fatal("client did not wait")
				}
				waits = append(waits, cw)
			}
			px := &waiter{sid: "s", proxyType: "standalone", natType: tt.proxy, ch: make(chan offer, 1)}
			if !p.add(px, 0) {
				t.Fatal("add refused")
			}
			got := -1
			for i, cw := range waits {
				w, m := p.stopWaiting(cw)
				if w == nil {
					continue
				}
				if got >= 0 || w != px {
					t.Fatalf("client %d handed %+v as well as client %d", i, w, got)
				}
				got = i
				if _, ok := p.answer("s", "a"); !ok || <-m.answer != "a" {
					t.Fatal("handed proxy has no match")
				}
				if p.withdraw(px) {
					t.Fatal("a handed proxy can be withdrawn")
				}
			}
			if got != tt.want {
				t.Fatalf("client %d served, want %d", got, tt.want)
			}
			if pooled := p.waiting() == 1; pooled != (tt.want < 0) {
				t.Fatalf("%d proxies pooled", p.waiting())
			}
			if n := p.waitingClients(); n != 0 {
				t.Fatalf("%d clients still queued", n)
			}
		})
	}
}

// TestNoParkingAfterRelease checks that once Close has released the
// parked polls, the pools take no more. A poll that passed the closed
// check just before Close and is added after the release would otherwise
// stay parked, its connection never answered nor closed: the expiry queue
// has stopped too.
func TestNoParkingAfterRelease(t *testing.T) {
	p := newPools()
	p.drainParked()
	late := &waiter{sid: "late", natType: nat.Unrestricted, proxyType: messages.ProxyTypeStandalone, conn: &net.TCPConn{}}
	if p.add(late, 0) {
		t.Fatal("a poll was parked after the release")
	}
	if n := p.waiting(); n != 0 {
		t.Fatalf("%d proxies waiting after the release", n)
	}
}

// TestProxyDisconnectTLS is TestProxyDisconnect over TLS: a proxy that
// closes its connection sends a close_notify alert before its FIN, so
// the parked connection has unread bytes, and must still be seen as gone.
func TestProxyDisconnectTLS(t *testing.T) {
	b, err := New(Config{AllowedRelayPattern: "snowflake.torproject.net$", ProxyPollTimeout: 30 * time.Second,
		ClientTimeout: testClientTimeout, ClientWait: testClientWait})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(b.Handler())
	t.Cleanup(func() {
		b.Close()
		srv.Close()
	})
	abandonParkedPoll(t, b, srv.URL, srv.Client())
	resp, err := srv.Client().Post(srv.URL+"/client", "", strings.NewReader(clientPollBody(t, nat.Unrestricted)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out, _ := io.ReadAll(resp.Body); string(out) != `{"error":"no snowflake proxies currently available"}` {
		t.Fatalf("client got %s", out)
	}
}

// abandonParkedPoll makes a proxy poll through client to the broker at url
// and, once it is parked, gives it up (the client closes the connection).
// It returns once the parked connection looks gone (connAlive false).
func abandonParkedPoll(t *testing.T, b *Broker, url string, client *http.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/proxy",
			strings.NewReader(proxyPollBody(t, "gone", nat.Unrestricted, 0, "snowflake.torproject.net$")))
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitWaiting(t, b, 1)
	cancel()
	<-done
	// The client closes its connection asynchronously; wait until the
	// parked connection shows it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.pools.mu.Lock()
		alive := len(b.pools.heaps[poolUnrestricted]) == 1 && connAlive(b.pools.heaps[poolUnrestricted][0].conn)
		b.pools.mu.Unlock()
		if !alive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("parked connection still looks alive after its proxy closed it")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
