package broker

import (
	"net/http"
	"testing"
)

func TestClientAddr(t *testing.T) {
	tests := []struct {
		name   string
		header map[string][]string
		remote string
		want   string
	}{
		{"peer only", nil, "203.0.113.5:4444", "203.0.113.5"},
		{"peer v6", nil, "[2001:db8::1]:4444", "2001:db8::1"},
		{"xff leftmost public", map[string][]string{"X-Forwarded-For": {"10.0.0.1, 198.51.100.2, 203.0.113.9"}}, "127.0.0.1:1", "198.51.100.2"},
		{"xff all private", map[string][]string{"X-Forwarded-For": {"10.0.0.1, 192.168.1.1, 100.64.0.1"}}, "203.0.113.5:1", "203.0.113.5"},
		{"xff several headers", map[string][]string{"X-Forwarded-For": {"127.0.0.1", "198.51.100.3"}}, "127.0.0.1:1", "198.51.100.3"},
		{"forwarded wins", map[string][]string{"Forwarded": {"for=198.51.100.7;proto=https"}, "X-Forwarded-For": {"198.51.100.2"}}, "127.0.0.1:1", "198.51.100.7"},
		{"forwarded quoted v6 with port", map[string][]string{"Forwarded": {`for="[2001:db8:cafe::17]:4711"`}}, "127.0.0.1:1", "2001:db8:cafe::17"},
		{"forwarded list, private first", map[string][]string{"Forwarded": {"for=192.168.0.9, For=198.51.100.8"}}, "127.0.0.1:1", "198.51.100.8"},
		{"forwarded obfuscated falls to xff", map[string][]string{"Forwarded": {"for=_hidden, for=unknown"}, "X-Forwarded-For": {"198.51.100.4"}}, "127.0.0.1:1", "198.51.100.4"},
		{"garbage", map[string][]string{"Forwarded": {";;==,,"}, "X-Forwarded-For": {"not an ip"}}, "203.0.113.6:9", "203.0.113.6"},
		{"mapped v4", map[string][]string{"X-Forwarded-For": {"::ffff:198.51.100.5"}}, "127.0.0.1:1", "198.51.100.5"},
		{"link-local and loopback skipped", map[string][]string{"X-Forwarded-For": {"fe80::1, ::1, 169.254.1.1, 0.0.0.0"}}, "203.0.113.1:1", "203.0.113.1"},
		{"bad peer", nil, "pipe", "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{Header: http.Header{}, RemoteAddr: tt.remote}
			for k, vs := range tt.header {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if got := clientAddr(r).String(); got != tt.want {
				t.Fatalf("clientAddr = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestOfferAddr(t *testing.T) {
	tests := []struct {
		offer, want string
	}{
		{testOffer, "203.0.113.7"},
		{`{"type":"offer","sdp":"a=candidate:1 1 udp 1 192.168.1.2 5 typ host\r\na=candidate:2 1 udp 1 198.51.100.1 6 typ srflx\r\n"}`, "198.51.100.1"},
		{`{"type":"offer","sdp":"a=candidate:1 1 udp 1 abc.local 5 typ host\r\n"}`, "invalid IP"},
		{`{"type":"offer","sdp":"a=candidate:short\r\n"}`, "invalid IP"},
		{`not json`, "invalid IP"},
	}
	for _, tt := range tests {
		if got := offerAddr(tt.offer).String(); got != tt.want {
			t.Errorf("offerAddr(%.40q) = %s, want %s", tt.offer, got, tt.want)
		}
	}
}
