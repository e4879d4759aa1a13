package main

import (
	"os"
	"path/filepath"
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
