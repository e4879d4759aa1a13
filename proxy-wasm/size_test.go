//go:build !js

package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// maxGzipSize is the size budget of the gzipped WebAssembly binary (the
// target is 2 MB; this leaves a little room before the test fails).
const maxGzipSize = 2200 << 10

// TestWasmSize guards the WebAssembly binary's size and checks that
// net/http's client stays out of it: the browser build reaches the broker
// through fetch directly, and linking net/http's Transport would add
// about a megabyte (gzipped).
func TestWasmSize(t *testing.T) {
	out := filepath.Join(t.TempDir(), "snowflake.wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// The name section (kept here, stripped by build.sh) lists every
	// linked function.
	for _, fn := range []string{"net/http.(*Transport).roundTrip", "net/http.(*Client).do"} {
		if bytes.Contains(bin, []byte(fn)) {
			t.Errorf("%s is linked into the wasm binary", fn)
		}
	}
	if !bytes.Contains(bin, []byte("proxy/lib.fetchPost")) {
		t.Error("the fetch transport is not linked; is the name section gone?")
	}

	cmd = exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", out, ".")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	bin, err = os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	w.Write(bin)
	w.Close()
	t.Logf("snowflake.wasm: %d bytes, %d gzipped", len(bin), gz.Len())
	if gz.Len() > maxGzipSize {
		t.Errorf("gzipped wasm is %d bytes, budget %d", gz.Len(), maxGzipSize)
	}
}
