// Package candidate classifies the addresses that WebRTC peers put in their
// session descriptions, and removes the ones a peer must not reveal.
//
// A Snowflake client or proxy offers only public addresses: a LAN, loopback
// or CGNAT address says something about the user's network and is of no use
// to a peer on the other side of the Internet. Conversely a proxy reports a
// client's public address to the bridge (for Tor's statistics), and the
// broker uses it for country counts when it has no TCP peer address (AMP
// cache and SQS rendezvous).
package candidate

import (
	"net/netip"
	"strings"
)

// nonPublic lists the ranges that are neither revealed nor reported:
// RFC 1918 and ULA private ranges, RFC 6598 shared address space (CGNAT) and
// link-local. Loopback, multicast and unspecified addresses are checked
// separately.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// IsPublic reports whether ip is a unicast address outside the private,
// CGNAT, link-local, loopback and unspecified ranges. IPv4-mapped IPv6
// addresses are judged as IPv4.
func IsPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// candidateAddr returns the connection address of an "a=candidate:" line
// body (foundation component transport priority address port typ ...).
func candidateAddr(fields []string) (netip.Addr, bool) {
	if len(fields) < 5 {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(fields[4])
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.WithZone(""), true
}

// ClientIP returns the public address of the peer that wrote sdp, as
// deployed proxies derive it for the bridge (wire-protocol §4.6): the
// address of the first a=candidate line that is public, else the first
// public c= connection address. It returns the zero Addr if there is none.
func ClientIP(sdp string) netip.Addr {
	var conn netip.Addr
	for line := range strings.Lines(sdp) {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "a=candidate:"); ok {
			if ip, ok := candidateAddr(strings.Fields(rest)); ok && IsPublic(ip) {
				return ip.Unmap()
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, "c="); ok && !conn.IsValid() {
			// nettype addrtype address
			f := strings.Fields(rest)
			if len(f) == 3 && f[0] == "IN" && (f[1] == "IP4" || f[1] == "IP6") {
				// Multicast forms carry "/ttl"; strip it.
				addr, _, _ := strings.Cut(f[2], "/")
				if ip, err := netip.ParseAddr(addr); err == nil && IsPublic(ip) {
					conn = ip.Unmap()
				}
			}
		}
	}
	return conn
}

// StripLocal removes from sdp the a=candidate lines whose address is not
// public, including host-name (mDNS) candidates. Server-reflexive and relay
// candidates carry the local address in raddr/rport, which are replaced by
// 0.0.0.0 and 0 as browsers do.
//
// Peers filter the SDP text rather than the addresses the ICE agent gathers
// on: pion gathers server-reflexive candidates only through the local
// addresses its filter admits, so a peer behind a home NAT (whose every
// local address is private) would otherwise offer no candidate at all.
func StripLocal(sdp string) string {
	var b strings.Builder
	b.Grow(len(sdp))
	for line := range strings.Lines(sdp) {
		body := strings.TrimRight(line, "\r\n")
		rest, ok := strings.CutPrefix(body, "a=candidate:")
		if !ok {
			b.WriteString(line)
			continue
		}
		f := strings.Fields(rest)
		if ip, ok := candidateAddr(f); !ok || !IsPublic(ip) {
			continue
		}
		for i := 5; i+1 < len(f); i++ {
			switch f[i] {
			case "raddr":
				f[i+1] = "0.0.0.0"
			case "rport":
				f[i+1] = "0"
			}
		}
		b.WriteString("a=candidate:")
		b.WriteString(strings.Join(f, " "))
		b.WriteString(line[len(body):])
	}
	return b.String()
}
