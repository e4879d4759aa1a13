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

var (
	// candidateRE finds runs that could be an address: hex digits, dots and
	// colons, optionally bracketed, with an optional zone and port. Each run
	// is then checked with net/netip, so version numbers ("2.13.1"), clock
	// times ("12:34:56") and hex identifiers are left alone.
	candidateRE = regexp.MustCompile(`\[?[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]*(?:%[0-9A-Za-z._-]+)?\]?(?::[0-9]{1,5})?`)
	// ipv4RE catches dotted quads glued to other hex-looking text, which the
	// candidate pass sees as one invalid run ("cafe:192.0.2.1").
	ipv4RE = regexp.MustCompile(`(?:[0-9]{1,3}\.){3}[0-9]{1,3}`)
)

// String returns s with every IPv4 and IPv6 address (and an attached port)
// replaced by [Replacement].
func String(s string) string {
	if !mayContainAddress(s) {
		return s
	}
	s = candidateRE.ReplaceAllStringFunc(s, func(m string) string {
		if isAddress(m) {
			return Replacement
		}
		// A sentence may end right after an address: "from 192.0.2.1."
		trimmed := strings.TrimRight(m, ".:")
		if trimmed != m && isAddress(trimmed) {
			return Replacement + m[len(trimmed):]
		}
		return m
	})
	return ipv4RE.ReplaceAllStringFunc(s, func(m string) string {
		if _, err := netip.ParseAddr(m); err == nil {
			return Replacement
		}
		return m
	})
}

// isAddress reports whether m is an IP address, an address with a port, or a
// bracketed IPv6 address.
func isAddress(m string) bool {
	if _, err := netip.ParseAddrPort(m); err == nil {
		return true
	}
	m = strings.TrimSuffix(strings.TrimPrefix(m, "["), "]")
	_, err := netip.ParseAddr(m)
	return err == nil
}

// mayContainAddress is a cheap pre-check that spares the regular expressions
// for the common log line with no dot or colon in it.
func mayContainAddress(s string) bool {
	return strings.ContainsAny(s, ".:")
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
