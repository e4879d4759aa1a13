// Package scrub removes IP addresses from log output.
//
// Snowflake's users are censored people and its volunteers are ordinary
// browser users; a log that records who talked to whom is a liability for
// both. Every binary installs [NewHandler] around its log handler, and only an
// explicit -unsafe-logging flag turns the scrubbing off.
package scrub

import (
	"context"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
)

// Replacement is what an address is replaced with.
const Replacement = "[scrubbed]"

// candidateRE finds runs that could be or contain an address: hex digits,
// dots and colons, optionally bracketed, with an optional zone and port.
// Each run is then checked with net/netip, so version numbers ("2.13.1"),
// clock times ("12:34:56") and hex identifiers are left alone.
var candidateRE = regexp.MustCompile(`\[?[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]*(?:%[0-9A-Za-z._-]+)?\]?(?::[0-9]{1,5})?`)

// encodedRE finds runs that could be an IPv6 address in URL encoding, as
// a query value such as the relay URL's client_ip holds one: colons written
// as %3A, brackets as %5B and %5D. Without it "2001%3Adb8%3A%3A1" would pass
// for text.
var encodedRE = regexp.MustCompile(`(?:%5[Bb])?[0-9A-Fa-f.]*(?:%3[Aa][0-9A-Fa-f.]*){2,}(?:%5[Dd](?:%3[Aa][0-9]{1,5})?)?`)

// decodeEncoded turns an encodedRE run back into candidate text.
var decodeEncoded = strings.NewReplacer("%3A", ":", "%3a", ":", "%5B", "[", "%5b", "[", "%5D", "]", "%5d", "]")

const (
	// maxAddressLen bounds the pieces of a run tried as addresses: the
	// longest IPv6 text (45), a zone of a Linux interface name (16), the
	// brackets and a port.
	maxAddressLen = 72
	// scanBudget bounds the bytes of runs one String call searches piece
	// by piece (about 150 ns a byte at worst, so 10 ms). Past it, a run
	// that is not one address is replaced whole: a line with that much hex,
	// dot and colon text is no log text a person reads, and it must not
	// make logging slow.
	scanBudget = 64 << 10
)

// String returns s with every IPv4 and IPv6 address (and an attached port)
// replaced by [Replacement].
func String(s string) string {
	if !mayContainAddress(s) {
		return s
	}
	budget := scanBudget
	if hasEncodedColon(s) {
		s = encodedRE.ReplaceAllStringFunc(s, func(m string) string {
			plain := decodeEncoded.Replace(m)
			if out := scrubRun(plain, &budget); out != plain {
				return out
			}
			return m
		})
	}
	return candidateRE.ReplaceAllStringFunc(s, func(m string) string {
		return scrubRun(m, &budget)
	})
}

func hasEncodedColon(s string) bool {
	return strings.Contains(s, "%3A") || strings.Contains(s, "%3a")
}

// scrubRun returns a candidate run with its addresses replaced. A run that
// is not one address may still hold some: glued to other text
// ("cafe:192.0.2.1"), to each other ("192.0.2.1:2001:db8::5", where the
// first reads as an address with port 2001), or ending a sentence ("from
// 192.0.2.1."). From each position, the longest piece that is an address
// is replaced, so what remains holds none and scrubbing again changes
// nothing. Runs of colon-separated hex pairs, such as certificate
// fingerprints, lose every eight pairs: they read as IPv6 addresses. A run
// the budget cannot search is replaced whole.
func scrubRun(m string, budget *int) string {
	if isAddress(m) || *budget < len(m) {
		return Replacement
	}
	*budget -= len(m)
	var b strings.Builder
	for m != "" {
		if n := addressPrefix(m); n > 0 {
			b.WriteString(Replacement)
			m = m[n:]
			continue
		}
		b.WriteByte(m[0])
		m = m[1:]
	}
	return b.String()
}

// addressPrefix returns the length of the longest prefix of s that is an
// address, or 0.
func addressPrefix(s string) int {
	// The shortest address is "::".
	for n := min(len(s), maxAddressLen); n >= 2; n-- {
		if isAddress(s[:n]) {
			return n
		}
	}
	return 0
}

// isAddress reports whether m is an IP address, an address with a port, or a
// bracketed IPv6 address.
func isAddress(m string) bool {
	if !plausible(m) {
		return false
	}
	if _, err := netip.ParseAddrPort(m); err == nil {
		return true
	}
	m = strings.TrimSuffix(strings.TrimPrefix(m, "["), "]")
	_, err := netip.ParseAddr(m)
	return err == nil
}

// plausible is a cheap necessary condition for isAddress: an IPv4 address
// has three dots and at most a port's colon; an IPv6 address has "::", or
// seven colons between eight groups, or six before an embedded IPv4
// address. Failed parses cost an allocated error each, and the search in
// scrubRun would make one per piece of every clock time.
func plausible(m string) bool {
	dots, colons := strings.Count(m, "."), strings.Count(m, ":")
	switch {
	case dots == 3 && colons <= 1:
		return true
	case strings.Contains(m, "::"), colons >= 7:
		return true
	default:
		return dots == 3 && colons >= 6
	}
}

// mayContainAddress is a cheap pre-check that spares the regular expressions
// for the common log line with no dot or colon in it.
func mayContainAddress(s string) bool {
	return strings.ContainsAny(s, ".:") || hasEncodedColon(s)
}

// NewHandler wraps next so that the message and every string-valued attribute
// (including errors and values formatted with fmt) have addresses removed.
// If unsafe is true, next is returned unchanged.
func NewHandler(next slog.Handler, unsafe bool) slog.Handler {
	if unsafe {
		return next
	}
	return &handler{next: next}
}

type handler struct {
	next slog.Handler
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	clean := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		clean.AddAttrs(scrubAttr(a))
		return true
	})
	return h.next.Handle(ctx, clean)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = scrubAttr(a)
	}
	return &handler{next: h.next.WithAttrs(clean)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name)}
}

func scrubAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, String(v.String()))
	case slog.KindGroup:
		group := v.Group()
		clean := make([]any, len(group))
		for i, g := range group {
			clean[i] = scrubAttr(g)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		// Errors, net.Addr, URLs, byte slices...: anything that can print an
		// address is flattened to its scrubbed text.
		return slog.String(a.Key, String(v.String()))
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
}
