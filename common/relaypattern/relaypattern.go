// Package relaypattern implements the relay host-name patterns shared by the
// broker and proxies (wire-protocol §2.9).
//
// A pattern is either a suffix ("snowflake.torproject.net$" matches any host
// name ending in "snowflake.torproject.net", with no label boundary, so it also
// matches "badsnowflake.torproject.net") or, with a leading '^', an exact
// host name ("^relay.example$"). One trailing '$' is ignored. Comparison is
// byte-wise, as deployed peers do it.
package relaypattern

import (
	"errors"
	"strings"
)

// ErrNoDollar is returned by [Validate] for a pattern that does not end in
// '$'. Proxies insist on the '$' so that an operator cannot mistake the
// pattern for a substring match.
var ErrNoDollar = errors.New("relaypattern: pattern must end with $")

// parsed is a pattern reduced to its two parts.
type parsed struct {
	exact bool
	name  string // the exact host name, or the suffix
}

func parse(pattern string) parsed {
	pattern = strings.TrimSuffix(pattern, "$")
	if rest, ok := strings.CutPrefix(pattern, "^"); ok {
		return parsed{exact: true, name: rest}
	}
	return parsed{name: pattern}
}

// Match reports whether host (a bare host name, no port) is allowed by
// pattern.
func Match(pattern, host string) bool {
	p := parse(pattern)
	if p.exact {
		return host == p.name
	}
	return strings.HasSuffix(host, p.name)
}

// IsSubset reports whether every host matched by brokerPattern is also
// matched by proxyPattern, judged on the pattern text as the broker does
// when it decides whether to give offers to a proxy: an exact proxy pattern
// needs the identical exact broker pattern; a suffix proxy pattern needs a
// broker suffix (or exact name) that ends with it.
//
// Note that an empty broker pattern (the upstream default) is a subset only
// of an empty proxy pattern, so such a broker refuses every proxy that
// sends a pattern.
func IsSubset(proxyPattern, brokerPattern string) bool {
	p, b := parse(proxyPattern), parse(brokerPattern)
	if p.exact {
		return b.exact && b.name == p.name
	}
	return strings.HasSuffix(b.name, p.name)
}

// Validate checks a proxy's own pattern.
func Validate(pattern string) error {
	if !strings.HasSuffix(pattern, "$") {
		return ErrNoDollar
	}
	return nil
}
