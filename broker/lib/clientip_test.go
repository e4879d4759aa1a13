package broker

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/snowflake-go/snowflake/common/candidate"
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
	// The same requests with other numbers of trusted hops.
	hopTests := []struct {
		name   string
		hops   int
		header map[string][]string
		remote string
		want   string
	}{
		{"no hops: xff ignored", 0, map[string][]string{"X-Forwarded-For": {"198.51.100.2"}}, "203.0.113.5:1", "203.0.113.5"},
		{"no hops: forwarded ignored", -1, map[string][]string{"Forwarded": {"for=198.51.100.7"}}, "127.0.0.1:1", "127.0.0.1"},
		{"one hop: spec rule", 1, map[string][]string{"X-Forwarded-For": {"198.51.100.2, 203.0.113.9"}}, "127.0.0.1:1", "198.51.100.2"},
		{"two hops: outer front skipped", 2, map[string][]string{"X-Forwarded-For": {"10.1.1.1, 203.0.113.9"}}, "127.0.0.1:1", "127.0.0.1"},
		{"two hops: client kept", 2, map[string][]string{"X-Forwarded-For": {"198.51.100.2, 203.0.113.9"}}, "127.0.0.1:1", "198.51.100.2"},
		{"two hops: across header lines", 2, map[string][]string{"X-Forwarded-For": {"198.51.100.2", "203.0.113.9"}}, "127.0.0.1:1", "198.51.100.2"},
		{"two hops: only the front", 2, map[string][]string{"X-Forwarded-For": {"203.0.113.9"}}, "127.0.0.1:2", "127.0.0.1"},
		{"two hops: forwarded", 2, map[string][]string{"Forwarded": {"for=198.51.100.8, for=203.0.113.9"}}, "127.0.0.1:1", "198.51.100.8"},
		{"two hops: forwarded front only, xff client", 2, map[string][]string{"Forwarded": {"for=203.0.113.9"}, "X-Forwarded-For": {"198.51.100.4, 203.0.113.9"}}, "127.0.0.1:1", "198.51.100.4"},
		{"three hops: chain shorter than hops", 3, map[string][]string{"X-Forwarded-For": {"198.51.100.2, 203.0.113.9"}}, "203.0.113.1:1", "203.0.113.1"},
	}
	for _, tt := range hopTests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{Header: http.Header{}, RemoteAddr: tt.remote}
			for k, vs := range tt.header {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if got := clientAddr(r, tt.hops).String(); got != tt.want {
				t.Fatalf("clientAddr(hops %d) = %s, want %s", tt.hops, got, tt.want)
			}
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{Header: http.Header{}, RemoteAddr: tt.remote}
			for k, vs := range tt.header {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if got := clientAddr(r, DefaultTrustedHops).String(); got != tt.want {
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

// FuzzClientAddr feeds arbitrary forwarding headers: the result is the
// TCP peer, or a public address taken from a header when hops are
// trusted; never a panic or an invalid address.
func FuzzClientAddr(f *testing.F) {
	f.Add("for=198.51.100.7;proto=https, for=\"[2001:db8::1]:80\"", "10.0.0.1, 198.51.100.2", 1)
	f.Add(";;==,,", "not an ip", 2)
	f.Add("", "198.51.100.2,203.0.113.9", 0)
	peer := netip.MustParseAddr("192.0.2.1")
	f.Fuzz(func(t *testing.T, fwd, xff string, hops int) {
		r := &http.Request{Header: http.Header{}, RemoteAddr: "192.0.2.1:1"}
		r.Header.Set("Forwarded", fwd)
		r.Header.Set("X-Forwarded-For", xff)
		a := clientAddr(r, hops)
		switch {
		case a == peer:
		case hops <= 0:
			t.Fatalf("headers used with %d hops: %s", hops, a)
		case !candidate.IsPublic(a) || a.Zone() != "" || a.Is4In6():
			t.Fatalf("non-public or unnormalised address %s", a)
		}
	})
}
