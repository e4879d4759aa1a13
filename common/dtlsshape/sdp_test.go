package dtlsshape

import (
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

func crlf(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n" }

// pionAnswer is the layout pion/webrtc v4.2.26 gave a data-channel
// answer (addresses from TEST-NET and loopback).
var pionAnswer = crlf(
	"v=0",
	"o=- 89386038988067605 1795875939 IN IP4 0.0.0.0",
	"s=-",
	"t=0 0",
	"a=msid-semantic:WMS *",
	"a=fingerprint:sha-256 1D:19:04:7E:EB:CB:C5:48:95:8F:2B:1F:62:F7:EE:C7:EF:A6:EB:FC:13:22:F7:11:05:B4:4D:31:18:8E:E8:5D",
	"a=extmap-allow-mixed",
	"a=group:BUNDLE 0",
	"m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
	"c=IN IP4 0.0.0.0",
	"a=setup:active",
	"a=mid:0",
	"a=sendrecv",
	"a=sctp-port:5000",
	"a=max-message-size:1073741823",
	"a=ice-ufrag:szzvNjUAQmLgaxju",
	"a=ice-pwd:tKvMBCSRIuSXjPBhTzlvDgjChznizKAu",
	"a=candidate:2878742611 1 udp 2130706431 127.0.0.1 44295 typ host ufrag szzvNjUAQmLgaxju generation 0",
	"a=candidate:2878742611 2 udp 2130706431 127.0.0.1 44295 typ host ufrag szzvNjUAQmLgaxju generation 0",
	"a=candidate:233762139 1 udp 1694498815 192.0.2.7 50000 typ srflx raddr 0.0.0.0 rport 44295 ufrag szzvNjUAQmLgaxju generation 0",
	"a=candidate:233762139 2 udp 1694498815 192.0.2.7 50000 typ srflx raddr 0.0.0.0 rport 44295 ufrag szzvNjUAQmLgaxju generation 0",
	"a=end-of-candidates",
)

// chromiumAnswer is Chromium 156's answer for a data channel, captured in
// a test namespace (mDNS host names off, TEST-NET address).
var chromiumAnswer = crlf(
	"v=0",
	"o=- 1012820507416041864 2 IN IP4 127.0.0.1",
	"s=-",
	"t=0 0",
	"a=group:BUNDLE 0",
	"a=extmap-allow-mixed",
	"a=msid-semantic: WMS",
	"m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
	"c=IN IP4 0.0.0.0",
	"a=candidate:1209636072 1 udp 2113937151 192.0.2.1 41277 typ host generation 0 network-cost 999",
	"a=ice-ufrag:Jlkk",
	"a=ice-pwd:ge/2CZyh8agqUyluNf+dczfl",
	"a=ice-options:trickle",
	"a=fingerprint:sha-256 97:19:01:5F:5F:6D:3E:39:57:29:EB:01:00:37:73:73:5F:18:2B:CA:41:58:7F:AA:F0:B3:85:36:03:EC:1B:8A",
	"a=setup:active",
	"a=mid:0",
	"a=sctp-port:5000",
	"a=max-message-size:262144",
)

// layout reduces an SDP to its line kinds: what a classifier comparing
// layouts sees, without per-session values.
func layout(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(s, "\r\n"), "\r\n") {
		k := l
		if i := strings.IndexAny(l, ": "); i > 0 && l[1] == '=' && l[0] == 'a' {
			k = l[:i]
		} else if len(l) > 2 {
			k = l[:2]
		}
		switch {
		case strings.HasPrefix(l, "a=candidate:"):
			f := strings.Fields(l)
			k = "a=candidate comp=" + f[1] + " ext=" + strings.Join(extNames(f[8:]), ",")
		case strings.HasPrefix(l, "a=msid-semantic"), strings.HasPrefix(l, "a=max-message-size"), strings.HasPrefix(l, "a=ice-options"), strings.HasPrefix(l, "a=setup"):
			k = l
		case strings.HasPrefix(l, "o="):
			f := strings.Fields(l)
			k = "o= version " + f[2] + " " + f[4] + " " + f[5]
		}
		out = append(out, k)
	}
	return out
}

func extNames(f []string) []string {
	var out []string
	for i := 0; i+1 < len(f); i += 2 {
		if f[i] != "raddr" && f[i] != "rport" && f[i] != "network-cost" {
			out = append(out, f[i])
		}
	}
	return out
}

func TestShapeSDP(t *testing.T) {
	got := ShapeSDP(pionAnswer)
	// Same layout as Chromium's except what pion's ICE agent fixes (the
	// credentials' lengths, invisible in the layout) and Chromium's
	// network-cost, which depends on the adapter type; one host and one
	// srflx candidate against Chromium's single host candidate.
	want := layout(chromiumAnswer)
	want = append(want[:10], append([]string{"a=candidate comp=1 ext=generation"}, want[10:]...)...)
	if g := layout(got); strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Errorf("layout:\n%s\nwant:\n%s\nSDP:\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"), got)
	}
	// What is negotiated is unchanged.
	var a, b sdp.SessionDescription
	if err := a.UnmarshalString(pionAnswer); err != nil {
		t.Fatal(err)
	}
	if err := b.UnmarshalString(got); err != nil {
		t.Fatalf("shaped SDP does not parse: %v\n%s", err, got)
	}
	for _, attr := range []string{"ice-ufrag", "ice-pwd", "setup", "mid", "sctp-port"} {
		va, _ := a.MediaDescriptions[0].Attribute(attr)
		vb, _ := b.MediaDescriptions[0].Attribute(attr)
		if va != vb {
			t.Errorf("%s: %q became %q", attr, va, vb)
		}
	}
	fa, _ := a.Attribute("fingerprint")
	fb, _ := b.MediaDescriptions[0].Attribute("fingerprint")
	if fa == "" || fa != fb {
		t.Errorf("fingerprint %q became %q", fa, fb)
	}
	if !strings.Contains(got, " 192.0.2.7 50000 typ srflx raddr 0.0.0.0 rport 44295 generation 0\r\n") {
		t.Errorf("srflx candidate lost or mangled:\n%s", got)
	}
	if ShapeSDP(got) != got {
		t.Error("not idempotent")
	}
	if ShapeSDP(chromiumAnswer) != chromiumAnswer {
		t.Errorf("Chromium's own SDP changed:\n%s", ShapeSDP(chromiumAnswer))
	}
	for _, odd := range []string{"", "v=0\r\n", "garbage", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"} {
		if ShapeSDP(odd) != odd {
			t.Errorf("ShapeSDP(%q) changed it", odd)
		}
	}
}

func FuzzShapeSDP(f *testing.F) {
	f.Add(pionAnswer)
	f.Add(chromiumAnswer)
	f.Add("v=0\nm=application 9 x\na=candidate:1 2 udp 1 h p typ host\n")
	f.Fuzz(func(t *testing.T, s string) {
		out := ShapeSDP(s)
		if ShapeSDP(out) != out {
			t.Fatalf("not idempotent:\n%q\n%q", out, ShapeSDP(out))
		}
	})
}
