package proxy

import (
	"os"
	"os/exec"
	"testing"
)

// TestBuildsForWasm guards the browser build: the package must compile for
// GOOS=js GOARCH=wasm with no native-only code outside !js files.
func TestBuildsForWasm(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	cmd := exec.Command(goBin, "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=js GOARCH=wasm go build: %v\n%s", err, out)
	}
}
