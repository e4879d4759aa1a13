package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestRemoveStaleBuildDirs(t *testing.T) {
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("needs /proc")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)

	// A PID that certainly belongs to no process now.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid

	dirs := map[string]bool{ // name -> kept
		fmt.Sprintf("%s%d-abc", buildDirPrefix, dead):        false,
		fmt.Sprintf("%s%d-def", buildDirPrefix, os.Getpid()): true,
		buildDirPrefix + "123456":                            true,  // old style, recent
		buildDirPrefix + "654321":                            false, // old style, two days old
		"unrelated-dir":                                      true,
	}
	for name := range dirs {
		if err := os.Mkdir(filepath.Join(tmp, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(filepath.Join(tmp, buildDirPrefix+"654321"), old, old); err != nil {
		t.Fatal(err)
	}

	removeStaleBuildDirs()

	for name, kept := range dirs {
		_, err := os.Stat(filepath.Join(tmp, name))
		if exists := err == nil; exists != kept {
			t.Errorf("%s: exists %v, want %v", name, exists, kept)
		}
	}
}

func TestServeTCP(t *testing.T) {
	var handled atomic.Int32
	ln := ServeTCP(t, func(c net.Conn) {
		handled.Add(1)
		io.Copy(c, c)
	})
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q %v", buf, err)
		}
		c.Close()
	}
	if n := handled.Load(); n != 2 {
		t.Fatalf("handled %d connections, want 2", n)
	}
}

func TestCuttableDialer(t *testing.T) {
	ln := ServeTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	d := NewCuttableDialer(func(ctx context.Context) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", ln.Addr().String())
	})
	d.Cut() // nothing dialled yet: no effect
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d.Cut()
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("write after Cut succeeded")
	}
	if n := d.Dials(); n != 1 {
		t.Errorf("Dials = %d, want 1", n)
	}
}

// TestProcessOutputAtExit checks that everything a process printed is in
// Output once Exited is closed, and that WaitFor finds a line printed just
// before the exit instead of reporting the exit.
func TestProcessOutputAtExit(t *testing.T) {
	for i := range 100 {
		p := Start(t, "echo", nil, "/bin/sh", "-c", "echo first; echo marker")
		<-p.Exited()
		if out := p.Output(); out != "first\nmarker\n" {
			t.Fatalf("run %d: output after exit %q, want both lines", i, out)
		}
		q := Start(t, "echo", nil, "/bin/sh", "-c", "echo marker")
		if line := q.WaitFor(t, "marker", 10*time.Second); line != "marker" {
			t.Fatalf("run %d: WaitFor returned %q", i, line)
		}
	}
}

func TestParseChromiumMajor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int // 0: an error
	}{
		{"Chromium 156.0.8078.73 built on Debian GNU/Linux 12 (bookworm)\n", 156},
		{"Chromium 148.0.7778.167 built on Debian GNU/Linux 12 (bookworm)", 148},
		{"Chromium 99", 99},
		{"Google Chrome 156.0.8078.73", 0},
		{"Chromium .1.2", 0},
		{"Chromium -5.0", 0},
		{"Chromium", 0},
		{"", 0},
	} {
		got, err := parseChromiumMajor(tc.in)
		if got != tc.want || (err == nil) != (tc.want != 0) {
			t.Errorf("parseChromiumMajor(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
