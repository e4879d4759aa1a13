//go:build !js

package proxy

import (
	"os"
	"os/exec"
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
