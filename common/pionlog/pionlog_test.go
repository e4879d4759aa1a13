package pionlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/pion/logging"

	"github.com/snowflake-go/snowflake/common/scrub"
)

var _ logging.LoggerFactory = (*Factory)(nil)

func TestLevelsAndScrubbing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level slog.Level
		emit  func(logging.LeveledLogger)
		want  string // "" means nothing logged
	}{
		{"error is a warning", slog.LevelInfo, func(l logging.LeveledLogger) { l.Error("send failed") }, "level=WARN msg=\"send failed\" pion=ice"},
		{"errorf is scrubbed", slog.LevelInfo, func(l logging.LeveledLogger) {
			l.Errorf("write udp %s->%s: refused", "192.0.2.1:5000", "[2001:db8::7]:443")
		}, "level=WARN msg=\"write udp [scrubbed]->[scrubbed]: refused\" pion=ice"},
		{"warn hidden at info", slog.LevelInfo, func(l logging.LeveledLogger) { l.Warnf("slow %d", 1) }, ""},
		{"warn is debug", slog.LevelDebug, func(l logging.LeveledLogger) { l.Warn("slow") }, "level=DEBUG msg=slow pion=ice"},
		{"info dropped", slog.LevelDebug, func(l logging.LeveledLogger) { l.Info("x"); l.Infof("%s", "x") }, ""},
		{"debug dropped", slog.LevelDebug, func(l logging.LeveledLogger) { l.Debug("x"); l.Debugf("%s", "x") }, ""},
		{"trace dropped", slog.LevelDebug, func(l logging.LeveledLogger) { l.Trace("x"); l.Tracef("%s", "x") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level: tc.level,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				},
			})
			tc.emit(New(slog.New(scrub.NewHandler(h, false))).NewLogger("ice"))
			if got := strings.TrimSpace(buf.String()); got != tc.want {
				t.Fatalf("logged %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNilLoggerDiscards(t *testing.T) {
	l := New(nil).NewLogger("sctp")
	l.Error("nobody hears this")
	l.Errorf("nor %s", "this")
}
