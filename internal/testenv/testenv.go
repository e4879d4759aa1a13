// Package testenv holds what end-to-end tests share: building this module's
// binaries, finding external tools (tor, Debian's Snowflake 2.5.1 binaries,
// nginx), isolating a test in a network namespace, and free loopback ports.
//
// Tests skip when an external tool is missing, unless SNOWFLAKE_REQUIRE_TOOLS
// is set (as `make test` does), in which case a missing tool is a failure:
// a forgotten install step must not pass as a green run.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/freeport"
)

// RequireTools reports whether missing external tools fail tests instead of
// skipping them.
func RequireTools() bool {
	return os.Getenv("SNOWFLAKE_REQUIRE_TOOLS") != ""
}

// LookPath returns the path of an external program, skipping (or failing,
// see [RequireTools]) the test when it is not installed.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	Missing(t, "%s is not installed", name)
	return ""
}

// Missing skips the test, or fails it when tools are required.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if RequireTools() {
		t.Fatalf("%s (SNOWFLAKE_REQUIRE_TOOLS is set; run `make test-deps`)", msg)
	}
	t.Skip(msg)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// ModuleRoot returns the directory holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testenv: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildMu    sync.Mutex
	buildDir   string
	buildCache = map[string]string{}
)

// Binary builds one of this module's main packages (for example "./server")
// once per test process and returns the path of the executable. The binary is
// built with the race detector when the test binary is, so end-to-end tests
// also race-check the real processes.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	return build(t, pkg, raceEnabled)
}

// BinaryNoRace is [Binary] without the race detector, for peer processes
// that only carry traffic in a test about another component: race-enabled
// peers are several times slower, which makes 100 MB transfers take minutes.
// Without -race in the test binary it is the same as Binary.
func BinaryNoRace(t testing.TB, pkg string) string {
	t.Helper()
	return build(t, pkg, false)
}

// build builds pkg, with or without the race detector, once per process.
func build(t testing.TB, pkg string, race bool) string {
	t.Helper()
	key, suffix := pkg, ""
	if raceEnabled && !race {
		// Binary and BinaryNoRace differ only in a race-enabled test.
		key, suffix = pkg+"#norace", "-norace"
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildCache[key]; ok {
		return p
	}
	if p, ok := inheritedBinary(key); ok {
		buildCache[key] = p
		return p
	}
	if buildDir == "" {
		removeStaleBuildDirs()
		dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", buildDirPrefix, os.Getpid()))
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		buildDir = dir
	}
	out := filepath.Join(buildDir, strings.ReplaceAll(strings.Trim(pkg, "./"), "/", "-")+suffix)
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = ModuleRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("testenv: go build %s: %v\n%s", pkg, err, stderr.String())
	}
	buildCache[key] = out
	return out
}

// binariesEnv carries the binaries a test process has built to the child
// test process that [IsolateNetwork] starts, as lines "pkg=path", so that
// the child does not build them again (race-enabled links take seconds).
const binariesEnv = "SNOWFLAKE_TEST_BINARIES"

// inheritedBinary returns the path of pkg's binary built by the parent test
// process, if it was passed down and still exists.
func inheritedBinary(pkg string) (string, bool) {
	for line := range strings.SplitSeq(os.Getenv(binariesEnv), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && k == pkg && isExecutable(v) {
			return v, true
		}
	}
	return "", false
}

// builtBinaries returns the binariesEnv value for the binaries built so far.
func builtBinaries() string {
	buildMu.Lock()
	defer buildMu.Unlock()
	var b strings.Builder
	for pkg, path := range buildCache {
		fmt.Fprintf(&b, "%s=%s\n", pkg, path)
	}
	return b.String()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Use it
// only for programs that cannot be told to listen on port 0 (tor, upstream
// binaries); another listener may still take it before the program binds
// it, but no outgoing connection can (see [freeport]).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.TCP()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return port
}

// buildDirPrefix starts the name of every test process's binary directory;
// the creating process's PID follows it.
const buildDirPrefix = "snowflake-testbin-"

// removeStaleBuildDirs deletes the binary directories of test processes
// that have exited. A test process cannot remove its own at exit (the
// binaries are shared by all its tests and Go has no exit hook), so each
// new one cleans up after the dead: otherwise every `make test` left about
// a gigabyte behind. Directories of running processes are kept, and so
// are unparsable names younger than a day.
func removeStaleBuildDirs() {
	if _, err := os.Stat("/proc/self"); err != nil {
		return // no way to tell live processes from dead ones
	}
	tmp := os.TempDir()
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), buildDirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, hasPID := strings.Cut(name, "-")
		pid, err := strconv.Atoi(pidText)
		if hasPID && err == nil {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				continue // its process is alive (or the PID was reused: keep)
			}
		} else if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < 24*time.Hour {
			continue
		}
		os.RemoveAll(filepath.Join(tmp, e.Name()))
	}
}
