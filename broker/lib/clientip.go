package broker

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/snowflake-go/snowflake/common/candidate"
	"github.com/snowflake-go/snowflake/common/messages"
)

// parseHostAddr parses "ip", "ip:port", "[v6]" or "[v6]:port".
func parseHostAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// forwardedFor appends the for= values of a Forwarded header (RFC 7239),
// in order, to out.
func forwardedFor(out []string, h string) []string {
	for _, elem := range strings.Split(h, ",") {
		for _, pair := range strings.Split(elem, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "for") {
				continue
			}
			out = append(out, strings.Trim(strings.TrimSpace(v), `"`))
		}
	}
	return out
}

// xffEntries appends the entries of an X-Forwarded-For header to out.
func xffEntries(out []string, h string) []string {
	return append(out, strings.Split(h, ",")...)
}

// leftmostPublic returns the leftmost public address of a forwarding
// chain, ignoring its last skip entries.
func leftmostPublic(chain []string, skip int) (netip.Addr, bool) {
	if skip >= len(chain) {
		return netip.Addr{}, false
	}
	for _, v := range chain[:len(chain)-skip] {
		if a, ok := parseHostAddr(v); ok && candidate.IsPublic(a) {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// clientAddr returns the address used for a request's statistics
// (wire-protocol §2): the leftmost public address of the Forwarded header,
// else the leftmost public address of X-Forwarded-For, else the TCP peer.
// With trustedHops n > 1, the n-1 rightmost entries of each header were
// appended by the operator's own inner fronts (they name the outer
// fronts) and are skipped; with n <= 0 the headers are ignored. The
// result is never used for matching, and never stored beyond aggregate
// counts.
func clientAddr(r *http.Request, trustedHops int) netip.Addr {
	if trustedHops > 0 {
		skip := trustedHops - 1
		var chain []string
		for _, h := range r.Header.Values("Forwarded") {
			chain = forwardedFor(chain, h)
		}
		if a, ok := leftmostPublic(chain, skip); ok {
			return a
		}
		chain = chain[:0]
		for _, h := range r.Header.Values("X-Forwarded-For") {
			chain = xffEntries(chain, h)
		}
		if a, ok := leftmostPublic(chain, skip); ok {
			return a
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := parseHostAddr(host)
	return a.Unmap()
}

// offerAddr returns the first public candidate address of an offer
// envelope: the only client address available over AMP and SQS.
func offerAddr(offer string) netip.Addr {
	d, err := messages.DecodeSessionDescription(offer)
	if err != nil {
		return netip.Addr{}
	}
	return candidate.ClientIP(d.SDP)
}
