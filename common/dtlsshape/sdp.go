package dtlsshape

import (
	"strings"
)

// chromiumMaxMessageSize is the max-message-size Chromium announces; pion
// announces 1073741823. Snowflake peers write far smaller messages, and a
// client already has to respect Chromium's value with browser proxies.
const chromiumMaxMessageSize = "262144"

// ShapeSDP rewrites an offer or answer made by pion into the layout
// Chromium uses for a data-channel-only session, without changing what
// it negotiates: session attributes in Chromium's order, the DTLS
// fingerprint in the media section, no duplicate component-2 candidates
// (pion's, for peers without rtcp-mux; Chromium never lists them), no
// "ufrag" candidate extension, no a=sendrecv or a=end-of-candidates in the
// application section, a=ice-options:trickle, Chromium's
// max-message-size, and Chromium's session version and origin address.
// What it cannot change is the length of pion's ICE credentials, which
// the ICE agent checks. SDP it does not recognise (no single
// m=application section) is returned unchanged.
func ShapeSDP(sdp string) string {
	eol := "\r\n"
	if !strings.Contains(sdp, eol) {
		eol = "\n"
	}
	lines := strings.Split(strings.TrimRight(sdp, "\r\n"), eol)
	first := -1
	for i, l := range lines {
		if l == "" || strings.ContainsAny(l, "\r\n") {
			return sdp // blank lines or mixed line ends: not pion's output
		}
		if strings.HasPrefix(l, "m=") {
			if first >= 0 || !strings.HasPrefix(l, "m=application ") {
				return sdp // several or non-data media sections: not ours to reorder
			}
			first = i
		}
	}
	if first < 1 || !strings.HasPrefix(lines[0], "v=") {
		return sdp
	}
	session, media := lines[:first], lines[first:]

	var out, sessionAttrs, fingerprint []string
	var group, extmap, msid []string
	for _, l := range session {
		switch {
		case strings.HasPrefix(l, "o="):
			out = append(out, chromiumOrigin(l))
		case strings.HasPrefix(l, "a=group:"):
			group = append(group, l)
		case l == "a=extmap-allow-mixed":
			extmap = append(extmap, l)
		case strings.HasPrefix(l, "a=msid-semantic:"):
			msid = append(msid, "a=msid-semantic: WMS")
		case strings.HasPrefix(l, "a=fingerprint:"):
			fingerprint = append(fingerprint, l)
		case strings.HasPrefix(l, "a="):
			sessionAttrs = append(sessionAttrs, l)
		default:
			out = append(out, l)
		}
	}
	out = append(out, group...)
	out = append(out, extmap...)
	out = append(out, msid...)
	out = append(out, sessionAttrs...)

	// Media section in Chromium's order.
	var cLine, cands, ufrag, pwd, options, setup, mid, sctpPort, maxSize, rest []string
	for _, l := range media[1:] {
		switch {
		case strings.HasPrefix(l, "c="):
			cLine = append(cLine, l)
		case strings.HasPrefix(l, "a=candidate:"):
			if c, ok := chromiumCandidate(l); ok {
				cands = append(cands, c)
			}
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			ufrag = append(ufrag, l)
		case strings.HasPrefix(l, "a=ice-pwd:"):
			pwd = append(pwd, l)
		case strings.HasPrefix(l, "a=ice-options:"):
			options = append(options, l)
		case strings.HasPrefix(l, "a=fingerprint:"):
			fingerprint = append(fingerprint, l)
		case strings.HasPrefix(l, "a=setup:"):
			setup = append(setup, l)
		case strings.HasPrefix(l, "a=mid:"):
			mid = append(mid, l)
		case strings.HasPrefix(l, "a=sctp-port:"):
			sctpPort = append(sctpPort, l)
		case strings.HasPrefix(l, "a=max-message-size:"):
			maxSize = append(maxSize, "a=max-message-size:"+chromiumMaxMessageSize)
		case l == "a=sendrecv", l == "a=end-of-candidates":
		default:
			rest = append(rest, l)
		}
	}
	if len(options) == 0 {
		options = []string{"a=ice-options:trickle"}
	}
	out = append(out, media[0])
	for _, part := range [][]string{cLine, cands, ufrag, pwd, options, fingerprint, setup, mid, sctpPort, maxSize, rest} {
		out = append(out, part...)
	}
	return strings.Join(out, eol) + eol
}

// chromiumOrigin rewrites "o=- <id> <version> IN IP4 <addr>" with
// Chromium's session version (2) and address (127.0.0.1); pion puts a
// clock-derived version and 0.0.0.0 there.
func chromiumOrigin(l string) string {
	f := strings.Fields(l)
	if len(f) != 6 {
		return l
	}
	f[2], f[5] = "2", "127.0.0.1"
	if f[4] != "IP4" {
		f[4] = "IP4"
	}
	return strings.Join(f, " ")
}

// chromiumCandidate drops component-2 candidates (ok false) and the
// "ufrag" extension attribute of the others.
func chromiumCandidate(l string) (string, bool) {
	f := strings.Fields(l)
	if len(f) < 8 {
		return l, true
	}
	if f[1] == "2" {
		return "", false
	}
	// Extension attributes come in name/value pairs after "typ <type>"
	// (and raddr/rport for reflexive candidates).
	out := append([]string(nil), f[:8]...)
	for i := 8; i+1 < len(f); i += 2 {
		if f[i] == "ufrag" {
			continue
		}
		out = append(out, f[i], f[i+1])
	}
	if (len(f)-8)%2 == 1 {
		out = append(out, f[len(f)-1])
	}
	return strings.Join(out, " "), true
}
