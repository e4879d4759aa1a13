package testenv

import (
	"os"
	"testing"
)

// chromiumPath is Debian's Chromium itself: the /usr/bin/chromium wrapper
// adds flags of its own.
const chromiumPath = "/usr/lib/chromium/chromium"

// StartChromium starts a headless Chromium with a fresh profile, no
// background traffic of its own, and args after that; it returns the
// process and the profile directory. The test is skipped (see [Missing])
// when Chromium is not installed.
//
// Chromium's scratch directories go to a temporary directory of the test
// too: Chromium makes them in TMPDIR and leaves them behind when it is
// killed, which test cleanup does to a browser that does not exit.
func StartChromium(t *testing.T, args ...string) (p *Process, profile string) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		Missing(t, "chromium is not installed (%v)", err)
	}
	profile = t.TempDir()
	scratch := t.TempDir()
	all := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile,
	}, args...)
	return Start(t, "chromium", []string{"TMPDIR=" + scratch}, chromiumPath, all...), profile
}
