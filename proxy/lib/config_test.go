//go:build !js

package proxy

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// A default relay that can never be dialled (no ws/wss scheme, no host)
// must be refused at start, not found out at every client.
func TestConfigValidateRelayURL(t *testing.T) {
	for _, tc := range []struct {
		relay string
		ok    bool
	}{
		{"", true}, // the default
		{"wss://snowflake.torproject.net/", true},
		{"ws://127.0.0.1:8080/", true},
		{"https://snowflake.torproject.net/", false},
		{"snowflake.torproject.net", false},
		{"wss:///path", false},
		{"wss://[::1/", false},
	} {
		err := (&Config{RelayURL: tc.relay}).Validate()
		if (err == nil) != tc.ok {
			t.Errorf("RelayURL %q: Validate() = %v, want ok %v", tc.relay, err, tc.ok)
		}
	}
}

// A broker poll must end even if the broker never answers: the browser
// build sends it with fetch, which has no timeout of its own, and a
// Config.HTTPClient need not have one either. A stalled poll would hold
// its capacity token and stop its poller for good.
func TestPollHasDeadline(t *testing.T) {
	p, err := New(Config{
		BrokerURL:       "http://127.0.0.1:1/",
		HTTPClient:      &http.Client{}, // no timeout
		ConcurrentPolls: 1,
		SkipRelayCheck:  true,
	})
	if err != nil {
		t.Fatal(err)
	}
	polled := make(chan time.Duration, 1)
	p.broker.send = func(ctx context.Context, u string, body []byte) ([]byte, error) {
		left := time.Duration(-1)
		if d, ok := ctx.Deadline(); ok {
			left = time.Until(d)
		}
		select {
		case polled <- left:
		default:
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	// Run's own context has no deadline, as in the proxy's main.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case left := <-polled:
		if left < 0 || left > brokerTimeout {
			t.Errorf("poll sent with time left %v, want a deadline within %v", left, brokerTimeout)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no poll sent")
	}
}

// A STUN URL that pion refuses fails every PeerConnection: the proxy would
// poll, take clients and drop each one, and its NAT probe would fail. It
// must be refused at start. Every URL Validate accepts must make a
// PeerConnection.
func TestConfigValidateSTUNURL(t *testing.T) {
	for _, tc := range []struct {
		stun string
		ok   bool
	}{
		{"stun:stun.l.google.com:19302", true},
		{"stun:198.51.100.1", true},
		{"stun:[2001:db8::1]:3478", true},
		{"stuns:stun.example:5349", true},
		// pion's PeerConnection ignores a STUN URL's query, as it was
		// accepted before the pion check.
		{"stun:stun.example:3478?transport=udp", true},
		{"stun.l.google.com:19302", false}, // no scheme
		{"stun:", false},
		{"stun:[::1", false},
		{"http://stun.example/", false},
		{"turn:turn.example:3478", false}, // needs credentials the flag cannot give
		{"turns:turn.example:5349", false},
	} {
		cfg := Config{BrokerURL: "http://127.0.0.1:1/", STUNURLs: []string{"stun:stun.example", tc.stun}}
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("STUN URL %q: Validate() = %v, want ok %v", tc.stun, err, tc.ok)
		}
		if err != nil {
			continue
		}
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := p.api.NewPeerConnection(p.peerConfiguration())
		if err != nil {
			t.Errorf("STUN URL %q passed Validate, but NewPeerConnection: %v", tc.stun, err)
			continue
		}
		pc.Close()
	}
}
