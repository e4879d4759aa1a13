//go:build !js

package proxy

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/messages"
)

// A broker that answers every poll at once with a client the proxy must
// refuse (a relay it does not accept, an offer that is no offer) must not
// make the proxy poll without pause: each refused client is a poll that
// found no one to serve, and waits the poll interval like one.
func TestRefusedMatchesKeepPollInterval(t *testing.T) {
	validSDP := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	validOffer, err := messages.SessionDescription{Type: messages.SDPTypeOffer, SDP: validSDP}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		offer  string
		relay  string
		wantIn string // in the refusal's log line
	}{
		{"relay off pattern", validOffer, "wss://relay.example/", "relay"},
		{"relay not TLS", validOffer, "ws://snowflake.torproject.net/", "relay"},
		{"offer not JSON", "not json", "", "offer"},
		{"answer for offer", `{"type":"answer","sdp":"v=0\r\n"}`, "", "offer"},
		{"SDP garbage", `{"type":"offer","sdp":"garbage"}`, "", "offer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			p, err := New(Config{
				BrokerURL:       "http://127.0.0.1:1/",
				PollInterval:    MinPollInterval,
				ConcurrentPolls: 1,
				SkipRelayCheck:  true,
				Logger:          logs.logger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			body, err := (&messages.ProxyPollResponse{Status: messages.StatusClientMatch, Offer: tc.offer, RelayURL: tc.relay}).Encode()
			if err != nil {
				t.Fatal(err)
			}
			var polls atomic.Int64
			p.broker.send = func(ctx context.Context, u string, _ []byte) ([]byte, error) {
				if !strings.HasSuffix(u, "/proxy") {
					t.Errorf("refused client answered: POST %s", u)
					return nil, context.Canceled
				}
				// Past a few, a runaway poller is proven; hold the
				// rest like a broker with no client, to spare the
				// machine.
				if polls.Add(1) > 20 {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				return body, nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if err := p.Run(ctx); err != nil {
				t.Fatal(err)
			}
			// Polls at 0 and about 2 s (±10% jitter).
			if n := polls.Load(); n > 3 {
				t.Errorf("%d polls in 3 s with a 2 s poll interval", n)
			}
			if f, m := p.Stats().Failed.Load(), p.Stats().Matches.Load(); f != m || f == 0 {
				t.Errorf("failed %d of %d matches, want all of them", f, m)
			}
			if !logs.contains("client not served", tc.wantIn) {
				t.Errorf("refusal not logged")
			}
			if n := p.tokens.count(); n != 0 {
				t.Errorf("tokens held after Run: %d", n)
			}
		})
	}
}
