package broker

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
)

// Short holds keep the tests fast; the logic does not depend on the values.
const (
	testHold          = 400 * time.Millisecond
	testClientTimeout = 400 * time.Millisecond
	testClientWait    = 100 * time.Millisecond
)

const testOffer = `{"type":"offer","sdp":"v=0\r\na=candidate:1 1 udp 2130706431 203.0.113.7 5000 typ host\r\n"}`
const testAnswer = `{"type":"answer","sdp":"v=0\r\na=candidate:1 1 udp 2130706431 198.51.100.9 6000 typ host\r\n"}`

// newTestBroker returns a broker with short timeouts served by an
// httptest server, both closed at test cleanup.
func newTestBroker(t *testing.T, mod func(*Config)) (*Broker, *httptest.Server) {
	t.Helper()
	cfg := Config{
		AllowedRelayPattern: "snowflake.torproject.net$",
		ProxyPollTimeout:    testHold,
		ClientTimeout:       testClientTimeout,
		ClientWait:          testClientWait,
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(func() {
		b.Close()
		srv.Close()
	})
	return b, srv
}

type httpResult struct {
	status int
	body   string
	header http.Header
}

func do(t *testing.T, method, url string, body []byte, header map[string]string) httpResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{resp.StatusCode, string(b), resp.Header}
}

func post(t *testing.T, url string, body string) httpResult {
	t.Helper()
	return do(t, http.MethodPost, url, []byte(body), nil)
}

func proxyPollBody(t *testing.T, sid string, natType nat.Type, clients int, pattern string) string {
	t.Helper()
	b, err := (&messages.ProxyPollRequest{Sid: sid, Type: "standalone", NAT: natType, Clients: clients,
		AcceptedRelayPattern: pattern}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func clientPollBody(t *testing.T, natType nat.Type) string {
	t.Helper()
	b, err := (&messages.ClientPollRequest{Offer: testOffer, NAT: natType}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startProxyPoll posts a proxy poll in the background and returns a channel
// with its decoded response.
func startProxyPoll(t *testing.T, srv *httptest.Server, sid string, natType nat.Type, clients int) <-chan *messages.ProxyPollResponse {
	t.Helper()
	body := proxyPollBody(t, sid, natType, clients, "snowflake.torproject.net$")
	ch := make(chan *messages.ProxyPollResponse, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/proxy", "", strings.NewReader(body))
		if err != nil {
			ch <- nil
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r, err := messages.DecodeProxyPollResponse(b)
		if err != nil {
			ch <- nil
			return
		}
		ch <- r
	}()
	return ch
}

// waitWaiting waits until n proxies are held.
func waitWaiting(t *testing.T, b *Broker, n int) {
	t.Helper()
	if !eventually(b.Waiting, n) {
		t.Fatalf("%d proxies waiting, want %d", b.Waiting(), n)
	}
}

// waitClients waits until n client polls wait for a proxy.
func waitClients(t *testing.T, b *Broker, n int) {
	t.Helper()
	if !eventually(b.pools.waitingClients, n) {
		t.Fatalf("%d clients waiting, want %d", b.pools.waitingClients(), n)
	}
}

// eventually reports whether count returns n within 5 s.
func eventually(count func() int, n int) bool {
	deadline := time.Now().Add(5 * time.Second)
	for count() != n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
