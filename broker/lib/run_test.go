package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestRunTLS serves the API over TLS with Run, checks HTTP/2 and HTTP/1.1
// proxy polls (held in the handler and parked respectively) and a match,
// and a clean stop on context cancellation.
func TestRunTLS(t *testing.T) {
	certFile, keyFile := testenv.WriteCert(t, t.TempDir(), "127.0.0.1")
	tlsConfig, err := TLSFromFiles(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TLSFromFiles(keyFile, certFile); err == nil {
		t.Fatal("swapped key pair accepted")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{AllowedRelayPattern: "x$", Listener: ln, TLSConfig: tlsConfig,
		ProxyPollTimeout: 5 * time.Second, ClientTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(ctx) }()
	base := "https://" + ln.Addr().String() + "/"

	for _, h2 := range []bool{true, false} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		type result struct {
			proto string
			body  string
		}
		proxyRes := make(chan result, 1)
		go func() {
			body, _ := (&messages.ProxyPollRequest{Sid: "tls", NAT: nat.Unrestricted, AcceptedRelayPattern: "x$"}).Encode()
			resp, err := client.Post(base+"proxy", "", strings.NewReader(string(body)))
			if err != nil {
				proxyRes <- result{body: err.Error()}
				return
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			proxyRes <- result{resp.Proto, string(out)}
		}()
		waitWaiting(t, b, 1)
		poll, _ := (&messages.ClientPollRequest{Offer: testOffer, NAT: nat.Unknown}).Encode()
		clientRes := make(chan string, 1)
		go func() {
			resp, err := client.Post(base+"client", "", strings.NewReader(string(poll)))
			if err != nil {
				clientRes <- err.Error()
				return
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			clientRes <- string(out)
		}()
		pr := <-proxyRes
		wantProto := "HTTP/1.1"
		if h2 {
			wantProto = "HTTP/2.0"
		}
		if pr.proto != wantProto || !strings.Contains(pr.body, `"Status":"client match"`) {
			t.Fatalf("h2=%v: proxy got %s %s", h2, pr.proto, pr.body)
		}
		if !b.answer("tls", testAnswer) {
			t.Fatalf("h2=%v: answer found no client", h2)
		}
		if out := <-clientRes; !strings.Contains(out, `"answer"`) {
			t.Fatalf("h2=%v: client got %s", h2, out)
		}
		tr.CloseIdleConnections()
	}
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still open after Run")
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{ClientTimeout: -1},
		{Bridges: BridgeList{}},
		{SQS: &SQSConfig{}},
		{SQS: &SQSConfig{QueueName: "q"}},
		{HTTP01Addr: ":80"},
		// A negative cap would make Run panic creating its semaphore.
		{MaxConnections: -1},
	}
	for i, c := range bad {
		if _, err := New(c); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
}

func TestParsePollIntervals(t *testing.T) {
	tests := []struct {
		in     string
		u, r   time.Duration
		wantOK bool
	}{
		{`{"unrestricted_poll_interval":30000,"restricted_poll_interval":10000}`, 30 * time.Second, 10 * time.Second, true},
		{`{"restricted_poll_interval":5000}`, 0, 5 * time.Second, true},
		{`{}`, 0, 0, true},
		{`{"restricted_poll_interval":0}`, 0, 0, false},
		{`{"restricted_poll_interval":-5}`, 0, 0, false},
		{`{"restricted_poll_interval":999999999999}`, 0, 0, false},
		// Milliseconds that overflow time.Duration when converted.
		{`{"restricted_poll_interval":9300000000000}`, 0, 0, false},
		{`{"unrestricted_poll_interval":9223372036854775807}`, 0, 0, false},
		{`{"other":1}`, 0, 0, false},
		{`[`, 0, 0, false},
	}
	for _, tt := range tests {
		u, r, err := ParsePollIntervals(strings.NewReader(tt.in))
		if (err == nil) != tt.wantOK || u != tt.u || r != tt.r {
			t.Errorf("ParsePollIntervals(%s) = %v, %v, %v", tt.in, u, r, err)
		}
	}
	b, _ := New(Config{})
	defer b.Close()
	b.SetNextPoll(30*time.Second, 0)
	if b.nextPoll(nat.Unrestricted) != 30000 || b.nextPoll(nat.Restricted) != 20000 || b.nextPoll(nat.Unknown) != 20000 {
		t.Fatal("SetNextPoll not applied per pool")
	}
}

// TestSlowloris checks that a client trickling headers is cut off after
// the header timeout, and that the connection cap holds further clients
// back while it lasts.
func TestSlowloris(t *testing.T) {
	ln, cancel, runErr := runOneConnBroker(t)
	defer cancel()

	slow, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "POST /proxy HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()

	// While the slow client holds the only slot, another is not served.
	other := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: 20 * time.Second}
		resp, err := c.Get("http://" + ln.Addr().String() + "/robots.txt")
		if err == nil {
			resp.Body.Close()
			if time.Since(start) < readHeaderTimeout-time.Second {
				err = errors.New("served while the connection cap was reached")
			}
		}
		other <- err
	}()

	slow.SetReadDeadline(time.Now().Add(readHeaderTimeout + 5*time.Second))
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("slow connection not closed by the server: %v", err)
	}
	if d := time.Since(start); d < readHeaderTimeout-time.Second || d > readHeaderTimeout+10*time.Second {
		t.Fatalf("slow connection closed after %v, want about %v", d, readHeaderTimeout)
	}
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}

// TestWriteTimeoutCoversClientWait checks that the write timeouts outlast
// the longest client poll: a client that waits for a proxy to poll and
// then for its answer is held for the client wait plus the client
// timeout, and its response must still be writable then.
func TestWriteTimeoutCoversClientWait(t *testing.T) {
	b, err := New(Config{ClientWait: 30 * time.Second, ClientTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	longest := 35 * time.Second
	if wt := b.newServer(nil).WriteTimeout; wt <= longest {
		t.Errorf("server write timeout %v, want more than %v", wt, longest)
	}
	if wt := b.writeTimeout(); wt <= longest {
		t.Errorf("keep-alive write timeout %v, want more than %v", wt, longest)
	}
}

// TestStopAtConnectionCap stops Run while the connection cap is reached:
// the server's accept loop then waits for a free slot, and closing the
// listener must end that wait, or http.Server.Shutdown (which waits for
// the accept loop before it closes idle connections) waits for a slot
// that only the idle connections it has not closed yet could free.
func TestStopAtConnectionCap(t *testing.T) {
	ln, cancel, runErr := runOneConnBroker(t)
	defer cancel()

	// An idle keep-alive connection takes the only slot.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/robots.txt")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	time.Sleep(100 * time.Millisecond) // the accept loop waits for a slot

	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(shutdownTimeout + 2*time.Second):
		t.Fatalf("Run still running %v after its context ended", shutdownTimeout+2*time.Second)
	}
}

// runOneConnBroker runs a broker on loopback that serves one connection at
// a time, until the returned cancel is called; Run's result then arrives on
// runErr.
func runOneConnBroker(t *testing.T) (net.Listener, context.CancelFunc, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Listener: ln, MaxConnections: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(ctx) }()
	return ln, cancel, runErr
}
