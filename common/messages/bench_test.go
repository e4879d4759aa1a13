package messages

import (
	"strings"
	"testing"

	"github.com/snowflake-go/snowflake/common/nat"
)

// A realistic offer envelope: about 1 KB of SDP.
var benchEnvelope, _ = SessionDescription{Type: "offer", SDP: strings.Repeat("a=candidate:1 1 udp 2130706431 203.0.113.1 40000 typ host\r\n", 16)}.Encode()

func BenchmarkDecodeClientPollRequest(b *testing.B) {
	body, _ := (&ClientPollRequest{Offer: benchEnvelope, NAT: nat.Unrestricted}).Encode()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := DecodeClientPollRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeProxyPollRequest(b *testing.B) {
	body, _ := (&ProxyPollRequest{Sid: "q4Yh2xq4Yh2xq4Yh2xq4Yh", Type: "standalone", NAT: nat.Restricted, Clients: 8,
		AcceptedRelayPattern: "snowflake.torproject.net$"}).Encode()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := DecodeProxyPollRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeProxyPollResponse(b *testing.B) {
	r := &ProxyPollResponse{Status: StatusClientMatch, Offer: benchEnvelope, NAT: nat.Unrestricted, NextPoll: 20000,
		RelayURL: "wss://snowflake.torproject.net/"}
	for b.Loop() {
		if _, err := r.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}
