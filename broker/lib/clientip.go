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

// forwardedFor returns the for= values of a Forwarded header (RFC 7239),
// in order.
func forwardedFor(h string) []string {
	var out []string
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

// clientAddr returns the address used for a request's statistics: the
// leftmost public address of the Forwarded header, else the leftmost public
// address of X-Forwarded-For, else the TCP peer. The result is never used
// for matching, and never stored beyond aggregate counts.
func clientAddr(r *http.Request) netip.Addr {
	for _, h := range r.Header.Values("Forwarded") {
		for _, v := range forwardedFor(h) {
			if a, ok := parseHostAddr(v); ok && candidate.IsPublic(a) {
				return a.Unmap()
			}
		}
	}
	for _, h := range r.Header.Values("X-Forwarded-For") {
		for _, v := range strings.Split(h, ",") {
			if a, ok := parseHostAddr(v); ok && candidate.IsPublic(a) {
				return a.Unmap()
			}
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
