package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/childproc"
)

// Process is an external program started for a test. Its combined output is
// kept (and shown when the test fails) and it is stopped at test cleanup.
type Process struct {
	Name string
	Cmd  *exec.Cmd

	mu      sync.Mutex
	out     bytes.Buffer
	lines   []chan string // subscribers to new output lines
	done    chan struct{}
	waitErr error
}

// Start runs name with args and env (added to the test's environment). The
// process gets its own process group so that cleanup also ends its children.
func Start(t testing.TB, name string, env []string, path string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Cmd: exec.Command(path, args...), done: make(chan struct{})}
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	p.Cmd.Stdout = pw
	p.Cmd.Stderr = pw
	if err := childproc.Start(p.Cmd); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		p.collect(pr)
	}()
	go func() {
		p.waitErr = p.Cmd.Wait()
		pw.Close()
		// Wait returns once the output has been read from the pipe, not
		// once collect has stored its last lines: done must wait for
		// that, or Output misses them.
		<-collected
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.Output())
		}
	})
	return p
}

func (p *Process) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.out.WriteString(line)
		p.out.WriteByte('\n')
		for _, ch := range p.lines {
			select {
			case ch <- line:
			default:
			}
		}
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

// Output returns everything the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitFor waits until the process prints a line containing substr, and
// returns that line. It fails the test on timeout or process exit.
func (p *Process) WaitFor(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	ch := make(chan string, 1024)
	p.mu.Lock()
	for _, line := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(line, substr) {
			p.mu.Unlock()
			return line
		}
	}
	p.lines = append(p.lines, ch)
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		select {
		case line := <-ch:
			if strings.Contains(line, substr) {
				return line
			}
		case <-p.done:
			// The line may be queued in ch still; Output has it all.
			for line := range strings.SplitSeq(p.Output(), "\n") {
				if strings.Contains(line, substr) {
					return line
				}
			}
			t.Fatalf("%s exited (%v) before printing %q; output:\n%s", p.Name, p.waitErr, substr, p.Output())
		case <-ctx.Done():
			t.Fatalf("%s did not print %q within %v; output:\n%s", p.Name, substr, timeout, p.Output())
		}
	}
}

// Exited returns a channel closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.Cmd.Process.Pid, sig)
}

// Stop ends the process group: SIGTERM, then SIGKILL after 5 s.
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
	return nil
}

// Kill ends the process group at once with SIGKILL.
func (p *Process) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// String names the process for messages.
func (p *Process) String() string { return fmt.Sprintf("%s[%d]", p.Name, p.Cmd.Process.Pid) }
