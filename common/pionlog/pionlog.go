// Package pionlog hands pion's log messages to a slog.Logger.
//
// Left alone, pion writes its errors straight to standard error: past a
// binary's -log file and past the scrubbing that keeps IP addresses out of
// logs (some of pion's errors wrap socket errors, which name both ends).
// A WebRTC SettingEngine given a [Factory] sends them through the binary's
// own logger instead.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Factory implements pion's logging.LoggerFactory over a slog.Logger.
//
// Levels are lowered by one step. pion reports as errors what concerns one
// peer and does not stop the program (a failed send, a bad candidate), so
// those are warnings here; its warnings are debug messages. Its info,
// debug and trace messages describe every packet and state change of every
// connection and are dropped, as pion's own default (errors only) does.
type Factory struct {
	logger *slog.Logger
}

// New returns a Factory that logs to logger; nil discards everything.
func New(logger *slog.Logger) *Factory {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Factory{logger: logger}
}

// NewLogger implements logging.LoggerFactory. Each message carries the pion
// scope ("ice", "dtls", "sctp", ...) as the attribute "pion".
func (f *Factory) NewLogger(scope string) logging.LeveledLogger {
	return &leveled{logger: f.logger.With("pion", scope)}
}

// leveled is one scope's logger.
type leveled struct {
	logger *slog.Logger
}

func (l *leveled) log(level slog.Level, msg string) {
	l.logger.Log(context.Background(), level, msg)
}

func (l *leveled) logf(level slog.Level, format string, args ...any) {
	// Formatting is the costly part; skip it for a level nobody reads.
	if l.logger.Enabled(context.Background(), level) {
		l.logger.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l *leveled) Error(msg string)                  { l.log(slog.LevelWarn, msg) }
func (l *leveled) Errorf(format string, args ...any) { l.logf(slog.LevelWarn, format, args...) }
func (l *leveled) Warn(msg string)                   { l.log(slog.LevelDebug, msg) }
func (l *leveled) Warnf(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l *leveled) Info(string)                       {}
func (l *leveled) Infof(string, ...any)              {}
func (l *leveled) Debug(string)                      {}
func (l *leveled) Debugf(string, ...any)             {}
func (l *leveled) Trace(string)                      {}
func (l *leveled) Tracef(string, ...any)             {}
