//go:build !js

package proxy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildsForWasm guards the browser build: the package must compile for
// GOOS=js GOARCH=wasm with no native-only code outside !js files, and vet
// (which also compiles the tests) must pass there, so native-only tests
// carry a !js constraint too.
func TestBuildsForWasm(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	for _, args := range [][]string{{"build", "-o", os.DevNull, "."}, {"vet", "."}} {
		cmd := exec.Command(goBin, args...)
		cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("GOOS=js GOARCH=wasm go %s: %v\n%s", args[0], err, out)
		}
	}
}

// TestJSUnderNode runs the package's browser-only tests (the js build's
// *_js_test.go files) in Node, with Go's WebAssembly runner; Node has the
// fetch API they replace.
func TestJSUnderNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package for WebAssembly")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not found (make test installs it)")
	}
	root, err := exec.Command(goBin, "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	runner := filepath.Join(strings.TrimSpace(string(root)), "lib", "wasm", "go_js_wasm_exec")
	cmd := exec.Command(goBin, "test", "-count=1", "-exec", runner, "-run", "^TestFetchPost$", ".")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("js tests under node: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ok") {
		t.Fatalf("js tests under node ran nothing:\n%s", out)
	}
}
