package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestLogToStateDirOldSpelling: upstream's client still accepts the old
// -logToStateDir spelling, so a torrc written for it must start ours too,
// with the log file in tor's PT state directory.
func TestLogToStateDirOldSpelling(t *testing.T) {
	bin := testenv.Binary(t, "./client")
	c := &chain{t: t, dir: t.TempDir()}
	p := testenv.Start(t, "client", []string{"TOR_PT_MANAGED_TRANSPORT_VER=1", "TOR_PT_CLIENT_TRANSPORTS=snowflake",
		"TOR_PT_STATE_LOCATION=" + filepath.Join(c.dir, "state")},
		bin, "-url", "http://127.0.0.1:9/", "-log", "snowflake.log", "-logToStateDir")
	p.WaitFor(t, "CMETHODS DONE", 30*time.Second)
	if _, err := os.Stat(filepath.Join(c.dir, "state", "snowflake.log")); err != nil {
		t.Errorf("no log in the state dir: %v", err)
	}
}

// TestBadFlagsReachTor: tor shows a managed transport's LOG lines, not its
// stderr, so a client that cannot start because of its torrc flags must
// say why in a LOG line; otherwise tor logs only "terminated with status
// code 2", again every second as it restarts the client.
func TestBadFlagsReachTor(t *testing.T) {
	bin := testenv.Binary(t, "./client")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-max", "1000"}, "must be at least 1 and at most 100"},
		{[]string{"-max", "many"}, "not an integer"},
		{[]string{"-utls-nosni=maybe"}, "not a boolean"},
		{[]string{"-no-such-flag"}, "no-such-flag"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			p := testenv.Start(t, "client", []string{"TOR_PT_MANAGED_TRANSPORT_VER=1", "TOR_PT_CLIENT_TRANSPORTS=snowflake",
				"TOR_PT_STATE_LOCATION=" + filepath.Join(dir, "state")},
				bin, append([]string{"-url", "http://127.0.0.1:9/"}, tc.args...)...)
			select {
			case <-p.Exited():
			case <-time.After(10 * time.Second):
				t.Fatalf("client still running with %v:\n%s", tc.args, p.Output())
			}
			found := false
			for _, line := range strings.Split(p.Output(), "\n") {
				if strings.HasPrefix(line, "LOG SEVERITY=error") && strings.Contains(line, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no error LOG line naming %q for tor; output:\n%s", tc.want, p.Output())
			}
		})
	}
}
