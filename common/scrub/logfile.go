package scrub

import (
	"fmt"
	"io"
	"log/slog"
	"os"
)

// OpenLogger returns the text logger every Snowflake binary writes: to the
// file at path (appended, created private), or to standard error when path
// is empty, at the given level, with addresses scrubbed unless unsafe. The
// returned Closer closes the file (a no-op for standard error).
func OpenLogger(path string, level slog.Level, unsafe bool) (*slog.Logger, io.Closer, error) {
	var w io.Writer = os.Stderr
	var closer io.Closer = nopCloser{}
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log: %w", err)
		}
		w, closer = f, f
	}
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(NewHandler(h, unsafe)), closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
