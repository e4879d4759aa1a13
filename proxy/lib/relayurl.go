package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/snowflake-go/snowflake/common/relaypattern"
)

// Errors of relay URL validation.
var (
	// ErrRelayScheme means the relay URL is not ws or wss, or is ws while
	// non-TLS relays are not allowed.
	ErrRelayScheme = errors.New("relay URL scheme not allowed")
	// ErrRelayPrivate means the relay host is a private, loopback,
	// link-local, CGNAT or unspecified IP literal.
	ErrRelayPrivate = errors.New("relay address is private")
	// ErrRelayPattern means the relay host does not match the accepted
	// relay pattern.
	ErrRelayPattern = errors.New("relay host does not match the accepted pattern")
)

// RelayPolicy says which relay URLs the proxy accepts from the broker.
type RelayPolicy struct {
	// Pattern is the accepted host-name pattern (relaypattern syntax).
	Pattern string
	// AllowNonTLS accepts ws:// relays as well as wss://.
	AllowNonTLS bool
	// AllowPrivate accepts IP-literal relays in private, loopback,
	// link-local, CGNAT and unspecified ranges.
	AllowPrivate bool
}

// Check validates a relay URL (wire-protocol §4.4) and returns it parsed.
func (p RelayPolicy) Check(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("relay URL: %w", err)
	}
	switch u.Scheme {
	case "wss":
	case "ws":
		if !p.AllowNonTLS {
			return nil, fmt.Errorf("relay URL %q: %w (ws without -allow-non-tls-relay)", raw, ErrRelayScheme)
		}
	default:
		return nil, fmt.Errorf("relay URL %q: %w", raw, ErrRelayScheme)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("relay URL %q: no host", raw)
	}
	if ip, err := netip.ParseAddr(host); err == nil && !p.AllowPrivate && !IsPublic(ip) {
		return nil, fmt.Errorf("relay URL %q: %w", raw, ErrRelayPrivate)
	}
	if !relaypattern.Match(p.Pattern, host) {
		return nil, fmt.Errorf("relay URL %q: %w %q", raw, ErrRelayPattern, p.Pattern)
	}
	return u, nil
}

// nonPublic lists the ranges a proxy never relays to by default and never
// reports as a client address: RFC 1918 and ULA private ranges, CGNAT, and
// link-local (loopback and unspecified are checked separately).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// IsPublic reports whether ip is not private, CGNAT, link-local, loopback
// or unspecified. IPv4-mapped IPv6 addresses are judged as IPv4.
func IsPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsLoopback() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// ClientIP returns the client address to pass to the bridge, taken from an
// offer SDP (wire-protocol §4.6): the first a=candidate line whose address is
// public, else the first public c= connection address. It returns the zero
// Addr if there is none.
func ClientIP(sdp string) netip.Addr {
	var conn netip.Addr
	for line := range strings.Lines(sdp) {
		line = strings.TrimRight(line, "\r\n")
		if rest, ok := strings.CutPrefix(line, "a=candidate:"); ok {
			// foundation component transport priority address port typ ...
			f := strings.Fields(rest)
			if len(f) >= 5 {
				if ip, err := netip.ParseAddr(f[4]); err == nil && IsPublic(ip) {
					return ip.Unmap()
				}
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

// withClientIP returns relay with the client_ip query parameter set, or
// relay unchanged when ip is invalid.
func withClientIP(relay *url.URL, ip netip.Addr) *url.URL {
	if !ip.IsValid() {
		return relay
	}
	u := *relay
	q := u.Query()
	q.Set("client_ip", ip.String())
	u.RawQuery = q.Encode()
	return &u
}

// parseRelay parses the relay URL to dial; only ws and wss make sense.
func parseRelay(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("%q: %w", s, ErrRelayScheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q: no host", s)
	}
	return u, nil
}

// StripLocalCandidates removes from an SDP the a=candidate lines whose
// address is not public (wire-protocol §3.5 lists the ranges), so that a
// proxy does not reveal its LAN or loopback addresses. Candidates with host
// names (mDNS) are removed too. Server-reflexive candidates carry the local
// address only in raddr, which is rewritten to 0.0.0.0 like browsers do.
func StripLocalCandidates(sdp string) string {
	var b strings.Builder
	b.Grow(len(sdp))
	for line := range strings.Lines(sdp) {
		body := strings.TrimRight(line, "\r\n")
		if rest, ok := strings.CutPrefix(body, "a=candidate:"); ok {
			f := strings.Fields(rest)
			if len(f) < 5 {
				continue
			}
			ip, err := netip.ParseAddr(f[4])
			if err != nil || !IsPublic(ip) {
				continue
			}
			for i := 5; i+1 < len(f); i++ {
				if f[i] == "raddr" {
					f[i+1] = "0.0.0.0"
				}
				if f[i] == "rport" {
					f[i+1] = "0"
				}
			}
			b.WriteString("a=candidate:")
			b.WriteString(strings.Join(f, " "))
			b.WriteString(line[len(body):])
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}
