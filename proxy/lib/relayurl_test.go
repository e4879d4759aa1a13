package proxy

import (
	"errors"
	"net/netip"
	"net/url"
	"testing"

	"github.com/snowflake-go/snowflake/common/candidate"
)

func TestRelayPolicyCheck(t *testing.T) {
	strict := RelayPolicy{Pattern: "snowflake.torproject.net$"}
	loose := RelayPolicy{Pattern: "127.0.0.1$", AllowNonTLS: true, AllowPrivate: true}
	exact := RelayPolicy{Pattern: "^relay.example$", AllowNonTLS: true}
	for _, tc := range []struct {
		name   string
		policy RelayPolicy
		url    string
		want   error // nil: accepted; errAny: any error
	}{
		{"default relay", strict, "wss://snowflake.torproject.net/", nil},
		{"suffix subdomain", strict, "wss://01.snowflake.torproject.net/", nil},
		{"suffix without label boundary", strict, "wss://badsnowflake.torproject.net/", nil},
		{"with port", strict, "wss://snowflake.torproject.net:8443/x", nil},
		{"ws refused", strict, "ws://snowflake.torproject.net/", ErrRelayScheme},
		{"http refused", loose, "http://127.0.0.1/", ErrRelayScheme},
		{"https refused", strict, "https://snowflake.torproject.net/", ErrRelayScheme},
		{"off pattern", strict, "wss://evil.example/", ErrRelayPattern},
		{"pattern in path only", strict, "wss://evil.example/snowflake.torproject.net", ErrRelayPattern},
		{"loopback refused", RelayPolicy{Pattern: "127.0.0.1$"}, "wss://127.0.0.1/", ErrRelayPrivate},
		{"private v4 refused", RelayPolicy{Pattern: "10.1.2.3$"}, "wss://10.1.2.3/", ErrRelayPrivate},
		{"cgnat refused", RelayPolicy{Pattern: "100.64.0.1$"}, "wss://100.64.0.1/", ErrRelayPrivate},
		{"link-local v6 refused", RelayPolicy{Pattern: "fe80::1$"}, "wss://[fe80::1]/", ErrRelayPrivate},
		{"ula refused", RelayPolicy{Pattern: "fd00::1$"}, "wss://[fd00::1]/", ErrRelayPrivate},
		{"unspecified refused", RelayPolicy{Pattern: "0.0.0.0$"}, "wss://0.0.0.0/", ErrRelayPrivate},
		{"mapped loopback refused", RelayPolicy{Pattern: "ffff:127.0.0.1$"}, "wss://[::ffff:127.0.0.1]/", ErrRelayPrivate},
		{"public IP literal", RelayPolicy{Pattern: "192.0.2.1$"}, "wss://192.0.2.1/", nil},
		{"private allowed", loose, "ws://127.0.0.1:1234/", nil},
		{"exact match", exact, "ws://relay.example/", nil},
		{"exact refuses subdomain", exact, "ws://a.relay.example/", ErrRelayPattern},
		{"unparsable", strict, "wss://[::1/", errAny},
		{"no host", strict, "wss:///path", errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tc.policy.Check(tc.url)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("Check(%q) = %v, want accepted", tc.url, err)
			case tc.want == nil && u.String() != tc.url:
				t.Fatalf("Check(%q) returned %q", tc.url, u)
			case tc.want == errAny && err == nil:
				t.Fatalf("Check(%q) accepted, want an error", tc.url)
			case tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
				t.Fatalf("Check(%q) = %v, want %v", tc.url, err, tc.want)
			}
		})
	}
}

var errAny = errors.New("any error")

const offerSDP = "v=0\r\no=- 123 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 %s\r\n" +
	"a=ice-ufrag:abcd\r\n%s"

func TestWithClientIP(t *testing.T) {
	u, _ := url.Parse("wss://snowflake.torproject.net/?x=1")
	if got := withClientIP(u, netip.Addr{}).String(); got != u.String() {
		t.Errorf("no IP: %q", got)
	}
	if got := withClientIP(u, netip.MustParseAddr("2001:db8::1")).String(); got != "wss://snowflake.torproject.net/?client_ip=2001%3Adb8%3A%3A1&x=1" {
		t.Errorf("v6: %q", got)
	}
	if u.RawQuery != "x=1" {
		t.Error("withClientIP modified its argument")
	}
}

// FuzzRelayCheck checks that accepted relay URLs always satisfy the policy.
func FuzzRelayCheck(f *testing.F) {
	f.Add("wss://snowflake.torproject.net/")
	f.Add("ws://127.0.0.1:80/")
	f.Add("wss://[::1]/")
	f.Add("wss://10.0.0.1.snowflake.torproject.net/")
	pol := RelayPolicy{Pattern: "snowflake.torproject.net$"}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := pol.Check(raw)
		if err != nil {
			return
		}
		if u.Scheme != "wss" {
			t.Fatalf("accepted scheme %q", u.Scheme)
		}
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !candidate.IsPublic(ip) {
			t.Fatalf("accepted private %v", ip)
		}
	})
}
