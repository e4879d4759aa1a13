// Package httplog gives net/http servers an error log that goes through a
// binary's slog handler, at a level that fits each message.
//
// net/http's error log mixes two kinds of message. Most are about one
// client: a TLS handshake from a scanner, a malformed request, a client
// that went away. Those are Debug, or every port scan would fill an
// operator's log. But "http: Accept error" means the listener itself is
// failing, most often because the process ran out of file descriptors,
// and the server then takes no new connection at all until it recovers.
// An operator must see that at the default level, so it is a Warning.
package httplog

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"time"
)

// acceptErrorPrefix starts net/http's message for a failing Accept, which
// it retries with a growing pause (at most one second).
var acceptErrorPrefix = []byte("http: Accept error")

// ErrorLog returns a logger for http.Server.ErrorLog that writes to h:
// accept errors at Warn, every other message at Debug.
func ErrorLog(h slog.Handler) *log.Logger {
	return log.New(writer{h}, "", 0)
}

type writer struct{ h slog.Handler }

// Write logs one message; net/http's logger calls it once per message.
func (w writer) Write(p []byte) (int, error) {
	level := slog.LevelDebug
	if bytes.HasPrefix(p, acceptErrorPrefix) {
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !w.h.Enabled(ctx, level) {
		return len(p), nil
	}
	msg := string(bytes.TrimSuffix(p, []byte("\n")))
	r := slog.NewRecord(time.Now(), level, msg, 0)
	return len(p), w.h.Handle(ctx, r)
}
