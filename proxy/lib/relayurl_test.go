package proxy

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
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

func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		name string
		sdp  string
		want string
	}{
		{"srflx after host", "c=IN IP4 0.0.0.0\r\n" +
			"a=candidate:1 1 udp 2130706431 192.168.1.5 50000 typ host\r\n" +
			"a=candidate:2 1 udp 1694498815 203.0.113.7 50001 typ srflx raddr 192.168.1.5 rport 50000\r\n", "203.0.113.7"},
		{"first public wins", "a=candidate:1 1 udp 1 198.51.100.1 1 typ srflx\r\na=candidate:2 1 udp 1 203.0.113.7 2 typ srflx\r\n", "198.51.100.1"},
		{"v6 candidate", "a=candidate:1 1 udp 1 2001:db8::5 1 typ host\r\n", "2001:db8::5"},
		{"only private candidates, public c line", "c=IN IP4 203.0.113.9\r\na=candidate:1 1 udp 1 10.0.0.2 1 typ host\r\n", "203.0.113.9"},
		{"c line v6", "c=IN IP6 2001:db8::9\r\n", "2001:db8::9"},
		{"nothing public", "c=IN IP4 0.0.0.0\r\na=candidate:1 1 udp 1 127.0.0.1 1 typ host\r\na=candidate:2 1 udp 1 100.64.1.1 1 typ host\r\n", ""},
		{"mdns candidate skipped", "a=candidate:1 1 udp 1 abc.local 1 typ host\r\na=candidate:2 1 udp 1 203.0.113.8 1 typ srflx\r\n", "203.0.113.8"},
		{"truncated candidate", "a=candidate:1 1 udp\r\n", ""},
		{"LF line endings", "a=candidate:1 1 udp 1 203.0.113.7 1 typ srflx\n", "203.0.113.7"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ClientIP(tc.sdp)
			if tc.want == "" {
				if got.IsValid() {
					t.Fatalf("ClientIP = %v, want none", got)
				}
				return
			}
			if got != netip.MustParseAddr(tc.want) {
				t.Fatalf("ClientIP = %v, want %v", got, tc.want)
			}
		})
	}
}

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

// FuzzClientIP checks that any SDP text is handled without panicking and
// that whatever address comes out is public and appears in the input.
func FuzzClientIP(f *testing.F) {
	f.Add("a=candidate:1 1 udp 1 203.0.113.7 1 typ srflx\r\n")
	f.Add("c=IN IP4 198.51.100.2/127\r\n")
	f.Add("c=IN IP6 ::ffff:203.0.113.1\r\n")
	f.Add("a=candidate:\r\nc=\r\n")
	f.Fuzz(func(t *testing.T, sdp string) {
		ip := ClientIP(sdp)
		if !ip.IsValid() {
			return
		}
		if !IsPublic(ip) || ip.Is4In6() {
			t.Fatalf("ClientIP returned %v", ip)
		}
	})
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
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !IsPublic(ip) {
			t.Fatalf("accepted private %v", ip)
		}
	})
}

func TestStripLocalCandidates(t *testing.T) {
	in := "v=0\r\n" +
		"a=candidate:1 1 udp 2130706431 192.168.1.5 50000 typ host\r\n" +
		"a=candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host\r\n" +
		"a=candidate:3 1 udp 2130706431 abcd.local 50002 typ host\r\n" +
		"a=candidate:4 1 udp 1694498815 203.0.113.7 50003 typ srflx raddr 192.168.1.5 rport 50000\r\n" +
		"a=candidate:5 1 udp 2130706431 2001:db8::1 50004 typ host generation 0\r\n" +
		"a=candidate:6 1 udp\r\n" +
		"a=end-of-candidates\r\n"
	want := "v=0\r\n" +
		"a=candidate:4 1 udp 1694498815 203.0.113.7 50003 typ srflx raddr 0.0.0.0 rport 0\r\n" +
		"a=candidate:5 1 udp 2130706431 2001:db8::1 50004 typ host generation 0\r\n" +
		"a=end-of-candidates\r\n"
	if got := StripLocalCandidates(in); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

// FuzzStripLocalCandidates: the output never has a non-public candidate
// and is never longer than the input.
func FuzzStripLocalCandidates(f *testing.F) {
	f.Add("a=candidate:1 1 udp 1 10.0.0.1 1 typ host\r\na=candidate:2 1 udp 1 203.0.113.1 2 typ srflx raddr 10.0.0.1 rport 1\n")
	f.Add("a=candidate:\n\n\r")
	f.Fuzz(func(t *testing.T, sdp string) {
		out := StripLocalCandidates(sdp)
		if len(out) > len(sdp)+16*strings.Count(sdp, "raddr") {
			t.Fatalf("output grew: %q -> %q", sdp, out)
		}
		for line := range strings.Lines(out) {
			if rest, ok := strings.CutPrefix(line, "a=candidate:"); ok {
				f := strings.Fields(rest)
				ip, err := netip.ParseAddr(f[4])
				if err != nil || !IsPublic(ip) {
					t.Fatalf("kept %q", line)
				}
			}
		}
	})
}
