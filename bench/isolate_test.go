package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helper roles of TestIsolatedHarnessEndsWithParent, run in copies of
// the test binary: "parent" stands for the harness outside the namespace
// (it runs a "harness" through runIsolated), "harness" for the one inside,
// which cleans up its chain on SIGINT or SIGTERM (here: writes a file).
const isolateRole = "BENCH_TEST_ISOLATE_ROLE"

func TestIsolateHelper(t *testing.T) {
	dir := os.Getenv("BENCH_TEST_ISOLATE_DIR")
	switch os.Getenv(isolateRole) {
	case "parent":
		cmd := exec.Command(os.Args[0], "-test.run=^TestIsolateHelper$")
		cmd.Env = append(os.Environ(), isolateRole+"=harness")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		err := runIsolated(cmd)
		os.WriteFile(filepath.Join(dir, "parent-done"), []byte(fmt.Sprint(err)), 0o644)
		os.Exit(0)
	case "harness":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		os.WriteFile(filepath.Join(dir, "harness-pid"), []byte(fmt.Sprint(os.Getpid())), 0o644)
		select {
		case s := <-sigs:
			// Cleaning up takes a moment, which the parent waits for.
			time.Sleep(300 * time.Millisecond)
			os.WriteFile(filepath.Join(dir, "harness-cleaned"), []byte(s.String()), 0o644)
			os.Exit(1)
		case <-time.After(20 * time.Second):
			os.Exit(2)
		}
	}
}

// TestIsolatedHarnessEndsWithParent checks that the harness re-executed in
// the network namespace is told to stop (and clean up its chain) when the
// harness that started it is killed or terminated, rather than running
// its whole benchmark on in the background.
func TestIsolatedHarnessEndsWithParent(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			parent := exec.Command(os.Args[0], "-test.run=^TestIsolateHelper$")
			parent.Env = append(os.Environ(), isolateRole+"=parent", "BENCH_TEST_ISOLATE_DIR="+dir)
			parent.Stdout, parent.Stderr = os.Stderr, os.Stderr
			if err := parent.Start(); err != nil {
				t.Fatal(err)
			}
			waitFile(t, filepath.Join(dir, "harness-pid"), 10*time.Second)
			pidText, _ := os.ReadFile(filepath.Join(dir, "harness-pid"))
			var pid int
			fmt.Sscan(strings.TrimSpace(string(pidText)), &pid)
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			parent.Process.Signal(sig)
			parent.Wait()
			if !waitFile(t, filepath.Join(dir, "harness-cleaned"), 5*time.Second) {
				t.Fatalf("parent ended by %v; the isolated harness (pid %d) was not told to stop within 5 s", sig, pid)
			}
			if sig == syscall.SIGTERM {
				// The parent outlived the cleanup, so whoever waits for it
				// (make, a shell) gets its prompt back after the chain is gone.
				if _, err := os.Stat(filepath.Join(dir, "parent-done")); err != nil {
					t.Errorf("parent ended by SIGTERM before the isolated harness had cleaned up")
				}
			}
		})
	}
}

// waitFile reports whether path exists within d.
func waitFile(t *testing.T, path string, d time.Duration) bool {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
