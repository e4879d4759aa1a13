package proxy

import (
	"strconv"
	"strings"
	"testing"
)

// dataOffer is an offer with one data section whose attributes are attrs.
func dataOffer(attrs ...string) string {
	lines := []string{
		"v=0", "o=- 1 2 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0",
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sctp-port:5000",
	}
	lines = append(lines, attrs...)
	return strings.Join(lines, "\r\n") + "\r\n"
}

func TestOfferMessageLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		sdp  string
		want int
	}{
		{"absent: 64 KiB", dataOffer(), maxDCMessage},
		{"zero: any size", dataOffer("a=max-message-size:0"), maxDCMessage},
		{"pion's client", dataOffer("a=max-message-size:16384"), 16384},
		{"one byte", dataOffer("a=max-message-size:1"), 1},
		{"just below the cap", dataOffer("a=max-message-size:65534"), 65534},
		{"the cap", dataOffer("a=max-message-size:65535"), maxDCMessage},
		{"64 KiB", dataOffer("a=max-message-size:65536"), maxDCMessage},
		{"Chromium's", dataOffer("a=max-message-size:262144"), maxDCMessage},
		{"pion's default", dataOffer("a=max-message-size:1073741823"), maxDCMessage},
		{"beyond uint64", dataOffer("a=max-message-size:99999999999999999999999"), maxDCMessage},
		{"LF line ends", strings.ReplaceAll(dataOffer("a=max-message-size:4096"), "\r\n", "\n"), 4096},
		{"no final line end", strings.TrimSuffix(dataOffer("a=max-message-size:4096"), "\r\n"), 4096},
		{"blanks", dataOffer("a=max-message-size: 4096 "), 4096},
		{"repeated: smallest", dataOffer("a=max-message-size:8192", "a=max-message-size:4096", "a=max-message-size:0"), 4096},
		{"negative", dataOffer("a=max-message-size:-1"), maxDCMessage},
		{"not a number", dataOffer("a=max-message-size:16k"), maxDCMessage},
		{"empty value", dataOffer("a=max-message-size:"), maxDCMessage},
		{"other attribute", dataOffer("a=max-message-sizes:1024"), maxDCMessage},
		{"session level", "v=0\r\na=max-message-size:1024\r\n" + strings.TrimPrefix(dataOffer(), "v=0\r\n"), maxDCMessage},
		{"audio section", dataOffer() + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=max-message-size:1024\r\n", maxDCMessage},
		{"second data section", dataOffer() + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=max-message-size:1024\r\n", 1024},
		{"empty offer", "", maxDCMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := offerMessageLimit(tc.sdp); got != tc.want {
				t.Errorf("offerMessageLimit = %d, want %d", got, tc.want)
			}
		})
	}
}

// The offer comes from an unknown client through the broker: whatever it
// holds, the limit is a usable message size, and below maxDCMessage only if
// the offer announced that very number.
func FuzzOfferMessageLimit(f *testing.F) {
	f.Add(dataOffer("a=max-message-size:16384"))
	f.Add(dataOffer("a=max-message-size:0"))
	f.Add(dataOffer())
	f.Add("m=application \na=max-message-size:1\n")
	f.Fuzz(func(t *testing.T, sdp string) {
		got := offerMessageLimit(sdp)
		if got < 1 || got > maxDCMessage {
			t.Fatalf("limit %d out of [1, %d]", got, maxDCMessage)
		}
		if got < maxDCMessage && !strings.Contains(sdp, "a=max-message-size:") {
			t.Fatalf("limit %d from an offer that announces none", got)
		}
		if got < maxDCMessage && !strings.Contains(sdp, strconv.Itoa(got)) {
			t.Fatalf("limit %d is not in the offer", got)
		}
	})
}
