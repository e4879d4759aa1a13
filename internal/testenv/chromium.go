package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

// ImitatedChromium is the major version of the Chromium whose hellos and
// HTTP/2 opening the project imitates (rendezvous.ChromeSpec, h2client,
// dtlsshape.Chromium). Tests that compare those with the installed
// Chromium can only compare what changes between versions when the two
// versions are the same.
const ImitatedChromium = 156

// ChromiumMajor returns the major version of the installed Chromium. The
// test is skipped (see [Missing]) when Chromium is not installed.
func ChromiumMajor(t testing.TB) int {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		Missing(t, "chromium is not installed (%v)", err)
	}
	out, err := exec.Command(chromiumPath, "--version").Output()
	if err != nil {
		t.Fatalf("chromium --version: %v", err)
	}
	major, err := parseChromiumMajor(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return major
}

// parseChromiumMajor reads the major version from the output of chromium
// --version ("Chromium 156.0.8078.73 built on Debian ...").
func parseChromiumMajor(s string) (int, error) {
	f := strings.Fields(s)
	if len(f) < 2 || f[0] != "Chromium" {
		return 0, fmt.Errorf("testenv: chromium --version: unexpected output %q", s)
	}
	major, _, _ := strings.Cut(f[1], ".")
	n, err := strconv.Atoi(major)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("testenv: chromium --version: no major version in %q", s)
	}
	return n, nil
}

// VersionedErrorf returns the function for reporting a difference from the
// installed Chromium in something that changes between Chromium versions
// (the version in its headers, the groups it offers): t.Errorf when the
// installed Chromium is [ImitatedChromium], and otherwise t.Logf, since the
// difference may be the other version's. Debian's mirror does not always
// carry the newest Chromium: one machine installed 148.
func VersionedErrorf(t testing.TB) func(format string, args ...any) {
	t.Helper()
	installed := ChromiumMajor(t)
	if installed == ImitatedChromium {
		return t.Errorf
	}
	t.Logf("the installed Chromium is %d, not the %d our profiles imitate: differences in what changes between versions are only logged", installed, ImitatedChromium)
	return func(format string, args ...any) {
		t.Helper()
		t.Logf("Chromium %d, not %d: "+format, append([]any{installed, ImitatedChromium}, args...)...)
	}
}
