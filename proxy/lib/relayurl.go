package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/snowflake-go/snowflake/common/candidate"
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
	if ip, err := netip.ParseAddr(host); err == nil && !p.AllowPrivate && !candidate.IsPublic(ip) {
		return nil, fmt.Errorf("relay URL %q: %w", raw, ErrRelayPrivate)
	}
	if !relaypattern.Match(p.Pattern, host) {
		return nil, fmt.Errorf("relay URL %q: %w %q", raw, ErrRelayPattern, p.Pattern)
	}
	return u, nil
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

// dialRelay opens the WebSocket to relay for a client at clientIP (the
// zero Addr: unknown). It gives up after 10 s.
func dialRelay(ctx context.Context, relay *url.URL, clientIP netip.Addr, d relayDialer) (relayConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, err := d.dial(ctx, withClientIP(relay, clientIP).String())
	if err != nil {
		if clientIP.IsValid() {
			err = &plainAddrError{err: err, escaped: url.QueryEscape(clientIP.String()), plain: clientIP.String()}
		}
		return nil, fmt.Errorf("dial relay: %w", err)
	}
	return ws, nil
}

// plainAddrError shows the client's address in err's text in plain form.
// A failed handshake quotes the URL it requested, where client_ip is
// percent-encoded: an IPv6 address reads "2001%3Adb8%3A%3A1", which the
// log scrubber does not recognise as an address and would let through.
// In plain form the scrubber removes it, or keeps it with -unsafe-logging.
type plainAddrError struct {
	err            error
	escaped, plain string
}

func (e *plainAddrError) Error() string {
	return strings.ReplaceAll(e.err.Error(), e.escaped, e.plain)
}

func (e *plainAddrError) Unwrap() error { return e.err }
