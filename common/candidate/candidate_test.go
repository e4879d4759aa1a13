package candidate

import (
	"net/netip"
	"strings"
	"testing"
)

func TestIsPublic(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"192.0.2.1", true},
		{"2001:db8::1", true},
		{"::ffff:198.51.100.4", true},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"100.128.0.1", true},
		{"169.254.1.1", false},
		{"127.0.0.1", false},
		{"127.0.0.2", false},
		{"0.0.0.0", false},
		{"::", false},
		{"::1", false},
		{"fe80::1", false},
		{"fd00::1", false},
		{"::ffff:10.0.0.1", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := IsPublic(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("IsPublic(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
	if IsPublic(netip.Addr{}) {
		t.Error("IsPublic(zero Addr) = true")
	}
}

func TestClientIP(t *testing.T) {
	tests := []struct {
		name, sdp, want string
	}{
		{"first public candidate",
			"v=0\r\nc=IN IP4 203.0.113.9\r\n" +
				"a=candidate:1 1 udp 2130706431 192.168.1.2 5000 typ host\r\n" +
				"a=candidate:2 1 udp 1694498815 198.51.100.7 6000 typ srflx raddr 192.168.1.2 rport 5000\r\n" +
				"a=candidate:3 1 udp 1694498815 198.51.100.8 6001 typ srflx\r\n",
			"198.51.100.7"},
		{"connection line fallback", "v=0\r\nc=IN IP4 203.0.113.9\r\na=candidate:1 1 udp 1 10.0.0.1 5 typ host\r\n", "203.0.113.9"},
		{"connection line multicast ttl", "c=IN IP4 233.252.0.1/127\r\n", ""},
		{"connection line ipv6", "c=IN IP6 2001:db8::7\r\n", "2001:db8::7"},
		{"private only", "c=IN IP4 0.0.0.0\r\na=candidate:1 1 udp 1 10.0.0.1 5 typ host\r\n", ""},
		{"mdns", "a=candidate:1 1 udp 1 abcd.local 5 typ host\r\n", ""},
		{"short line", "a=candidate:1 1 udp\r\n", ""},
		{"lf only", "a=candidate:1 1 udp 1 192.0.2.5 5 typ host\n", "192.0.2.5"},
		{"mapped", "a=candidate:1 1 udp 1 ::ffff:192.0.2.6 5 typ host\r\n", "192.0.2.6"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ClientIP(tt.sdp)
			gotS := ""
			if got.IsValid() {
				gotS = got.String()
			}
			if gotS != tt.want {
				t.Errorf("ClientIP = %q, want %q", gotS, tt.want)
			}
		})
	}
}

func TestStripLocal(t *testing.T) {
	in := "v=0\r\n" +
		"a=candidate:1 1 udp 2130706431 192.168.1.2 5000 typ host\r\n" +
		"a=candidate:2 1 udp 2130706431 127.0.0.1 5001 typ host\r\n" +
		"a=candidate:3 1 udp 2130706431 abcd.local 5002 typ host\r\n" +
		"a=candidate:4 1 udp 1694498815 198.51.100.7 6000 typ srflx raddr 192.168.1.2 rport 5000\r\n" +
		"a=candidate:5 1 udp 2130706431 2001:db8::1 7000 typ host generation 0\r\n" +
		"a=candidate:6\r\n" +
		"a=end-of-candidates\r\n"
	want := "v=0\r\n" +
		"a=candidate:4 1 udp 1694498815 198.51.100.7 6000 typ srflx raddr 0.0.0.0 rport 0\r\n" +
		"a=candidate:5 1 udp 2130706431 2001:db8::1 7000 typ host generation 0\r\n" +
		"a=end-of-candidates\r\n"
	if got := StripLocal(in); got != want {
		t.Errorf("StripLocal:\n got %q\nwant %q", got, want)
	}
}

func FuzzStripLocal(f *testing.F) {
	f.Add("a=candidate:4 1 udp 1 198.51.100.7 6000 typ srflx raddr 192.168.1.2 rport 5000\r\n")
	f.Add("a=candidate:1 1 udp 1 10.0.0.1 5 typ host\nc=IN IP4 192.0.2.1\n")
	f.Fuzz(func(t *testing.T, sdp string) {
		out := StripLocal(sdp)
		if again := StripLocal(out); again != out {
			t.Errorf("not idempotent: %q -> %q -> %q", sdp, out, again)
		}
		for line := range strings.Lines(out) {
			rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "a=candidate:")
			if !ok {
				continue
			}
			ip, ok := candidateAddr(strings.Fields(rest))
			if !ok || !IsPublic(ip) {
				t.Errorf("local candidate survived: %q", line)
			}
		}
		if ip := ClientIP(out); ip.IsValid() && !IsPublic(ip) {
			t.Errorf("ClientIP returned non-public %s", ip)
		}
	})
}

// FuzzClientIP: whatever address comes out of any SDP text is public and
// in its IPv4 form when it is an IPv4 address.
func FuzzClientIP(f *testing.F) {
	f.Add("a=candidate:1 1 udp 1 203.0.113.7 1 typ srflx\r\n")
	f.Add("c=IN IP4 198.51.100.2/127\r\n")
	f.Add("c=IN IP6 ::ffff:203.0.113.1\r\n")
	f.Add("a=candidate:\r\nc=\r\n")
	f.Fuzz(func(t *testing.T, sdp string) {
		ip := ClientIP(sdp)
		if ip.IsValid() && (!IsPublic(ip) || ip.Is4In6()) {
			t.Fatalf("ClientIP returned %v", ip)
		}
	})
}
