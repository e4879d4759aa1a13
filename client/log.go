package main

import (
	"context"
	"log/slog"
	"strings"

	pt "gitlab.torproject.org/tpo/anti-censorship/pluggable-transports/goptlib"
)

// teeHandler sends every record to the file handler, and those at Info or
// above to tor as well.
type teeHandler struct {
	file slog.Handler
	tor  slog.Handler
}

func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.file.Enabled(ctx, l) || h.tor.Enabled(ctx, l)
}

func (h *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.file.Enabled(ctx, r.Level) {
		h.file.Handle(ctx, r.Clone())
	}
	if h.tor.Enabled(ctx, r.Level) {
		h.tor.Handle(ctx, r)
	}
	return nil
}

func (h *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &teeHandler{file: h.file.WithAttrs(as), tor: h.tor.WithAttrs(as)}
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	return &teeHandler{file: h.file.WithGroup(name), tor: h.tor.WithGroup(name)}
}

// ptLogHandler writes records as PT "LOG SEVERITY=... MESSAGE=..." lines,
// which tor shows in its own log.
type ptLogHandler struct {
	attrs []slog.Attr
}

func (h *ptLogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *ptLogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool {
		b.WriteString(" ")
		b.WriteString(a.Key)
		b.WriteString("=")
		b.WriteString(a.Value.String())
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	sev := pt.LogSeverityNotice
	switch {
	case r.Level >= slog.LevelError:
		sev = pt.LogSeverityError
	case r.Level >= slog.LevelWarn:
		sev = pt.LogSeverityWarning
	}
	pt.Log(sev, b.String())
	return nil
}

func (h *ptLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &ptLogHandler{attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *ptLogHandler) WithGroup(string) slog.Handler { return h }
