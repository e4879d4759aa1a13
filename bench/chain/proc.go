// Package chain starts a whole Snowflake chain (STUN server, data sink,
// bridge server, broker, proxies, clients) as real processes on loopback,
// and measures it: it is shared by the benchmark harness, the demo and the
// end-to-end tests, so all three exercise the chain in the same way.
//
// Processes are started from given binary paths, so the same code runs this
// module's binaries and Debian's upstream 2.5.1 snowflake-client and
// snowflake-proxy. Every process's output goes to a log file in a working
// directory and is also scanned line by line, so callers can wait for a
// readiness line and print a log tail when something fails.
package chain

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/snowflake-go/snowflake/internal/childproc"
)

// tailLines is how many recent output lines a Proc keeps in memory.
const tailLines = 400

// Proc is one started program. Its output is appended to LogPath and kept
// (the last lines) in memory for Tail and WaitFor.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	logFile *os.File

	mu        sync.Mutex // guards the fields below
	tail      []string
	watchers  map[int]chan string
	nextWatch int

	done    chan struct{} // closed when the process has exited and output is drained
	waitErr error         // valid after done
}

// StartProc starts path with args in its own process group; env is added to
// the current environment. The process's stdin is a pipe held open until
// Stop, so managed pluggable transports that exit on stdin close stay up.
func StartProc(dir, name string, env []string, path string, args ...string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chain: start %s: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, logFile: lf, watchers: map[int]chan string{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("chain: start %s: %w", name, err)
	}
	p.stdin = stdin
	pr, pw, err := os.Pipe()
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("chain: start %s: %w", name, err)
	}
	p.cmd.Stdout = pw
	p.cmd.Stderr = pw
	if err := childproc.Start(p.cmd); err != nil {
		pr.Close()
		pw.Close()
		lf.Close()
		return nil, fmt.Errorf("chain: start %s: %w", name, err)
	}
	pw.Close() // the child holds its own copy
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		p.collect(pr)
	}()
	go func() {
		err := p.cmd.Wait()
		// Children of the process (none for our binaries) may keep the
		// pipe open; do not wait for them forever.
		select {
		case <-collected:
		case <-time.After(2 * time.Second):
			pr.Close()
			<-collected
		}
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *Proc) collect(r io.ReadCloser) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			p.logFile.WriteString(line)
			p.addLine(strings.TrimRight(line, "\r\n"))
		}
		if err != nil {
			return
		}
	}
}

func (p *Proc) addLine(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) >= tailLines {
		copy(p.tail, p.tail[1:])
		p.tail = p.tail[:len(p.tail)-1]
	}
	p.tail = append(p.tail, line)
	for _, ch := range p.watchers {
		select {
		case ch <- line:
		default: // a slow watcher misses lines rather than blocking the process
		}
	}
}

// PID returns the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error once Done is closed.
func (p *Proc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Tail returns up to n of the most recent output lines.
func (p *Proc) Tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.tail
	if len(t) > n {
		t = t[len(t)-n:]
	}
	return strings.Join(t, "\n")
}

// Watch returns a channel of future output lines (lossy when not drained)
// and a function that stops the watch.
func (p *Proc) Watch() (<-chan string, func()) {
	ch := make(chan string, 4096)
	p.mu.Lock()
	id := p.nextWatch
	p.nextWatch++
	p.watchers[id] = ch
	p.mu.Unlock()
	return ch, func() {
		p.mu.Lock()
		delete(p.watchers, id)
		p.mu.Unlock()
	}
}

// Seen reports whether a line containing substr is among the kept lines.
func (p *Proc) Seen(substr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.tail {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

// WaitFor waits for an output line containing substr (already printed or
// future) and returns it.
func (p *Proc) WaitFor(ctx context.Context, substr string) (string, error) {
	ch, stop := p.Watch()
	defer stop()
	p.mu.Lock()
	for _, l := range p.tail {
		if strings.Contains(l, substr) {
			p.mu.Unlock()
			return l, nil
		}
	}
	p.mu.Unlock()
	for {
		select {
		case l := <-ch:
			if strings.Contains(l, substr) {
				return l, nil
			}
		case <-p.done:
			// Lines may still be queued in ch.
			for {
				select {
				case l := <-ch:
					if strings.Contains(l, substr) {
						return l, nil
					}
				default:
					return "", fmt.Errorf("chain: %s exited (%v) before printing %q", p.Name, p.Err(), substr)
				}
			}
		case <-ctx.Done():
			return "", fmt.Errorf("chain: waiting for %s to print %q: %w", p.Name, substr, ctx.Err())
		}
	}
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("chain: signal %s: %w", p.Name, err)
	}
	return nil
}

// Stop closes stdin and sends SIGTERM, then SIGKILL after grace. It returns
// once the process has exited. Stop is idempotent.
func (p *Proc) Stop(grace time.Duration) {
	p.stdin.Close()
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Kill ends the process group at once and waits for it.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Usage is the resource use of one process.
type Usage struct {
	CPU     time.Duration // user + system
	PeakRSS int64         // bytes (VmHWM)
	// Switches counts the context switches of all the process's threads,
	// voluntary and not. Many processes each moving little data pay for
	// sleeping and waking far more often per byte than a few busy ones.
	Switches int64
	// RunQueueWait sums the time the process's threads were runnable but
	// waited for a CPU (schedstat's run delay; zero once the process has
	// exited, or without schedstat).
	RunQueueWait time.Duration
}

// Usage returns the CPU time and peak RSS of the process, from /proc while
// it runs and from its rusage after it has exited.
func (p *Proc) Usage() (Usage, error) {
	select {
	case <-p.done:
		ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if !ok {
			return Usage{}, fmt.Errorf("chain: %s: no rusage", p.Name)
		}
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		return Usage{CPU: cpu, PeakRSS: ru.Maxrss * 1024, Switches: ru.Nvcsw + ru.Nivcsw}, nil
	default:
	}
	return ProcUsage(p.cmd.Process.Pid)
}

// clockTicks is USER_HZ, fixed at 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcUsage reads CPU time, peak RSS and context switches of a running
// process from /proc.
func ProcUsage(pid int) (Usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("chain: usage: %w", err)
	}
	// The command name (field 2) may contain spaces; fields are counted
	// after its closing parenthesis.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Usage{}, fmt.Errorf("chain: usage: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return Usage{}, fmt.Errorf("chain: usage: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return Usage{}, fmt.Errorf("chain: usage: bad cpu times in /proc/%d/stat", pid)
	}
	u := Usage{CPU: time.Duration(ut+st) * time.Second / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("chain: usage: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return Usage{}, fmt.Errorf("chain: usage: bad VmHWM %q", rest)
			}
			u.PeakRSS = kb * 1024
		}
	}
	// The process's own status counts only its first thread's switches.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("chain: usage: %w", err)
	}
	// utime and stime come in 10 ms ticks, too coarse for an idle client
	// over a few seconds; the threads' schedstat run times are in
	// nanoseconds. They miss threads that have exited, which Go
	// processes' threads do not.
	var run time.Duration
	precise := true
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread has ended since the listing
		}
		n, err := parseSwitches(string(b))
		if err != nil {
			return Usage{}, fmt.Errorf("chain: usage: task %s of %d: %w", t.Name(), pid, err)
		}
		u.Switches += n
		b, err = os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			precise = false // no schedstat in this kernel, or the thread ended
			continue
		}
		d, wait, err := parseSchedstat(string(b))
		if err != nil {
			return Usage{}, fmt.Errorf("chain: usage: task %s of %d: %w", t.Name(), pid, err)
		}
		run += d
		u.RunQueueWait += wait
	}
	if precise && run > 0 {
		u.CPU = run
	}
	return u, nil
}

// parseSchedstat returns the time on CPU and the time spent runnable but
// waiting for a CPU from a /proc schedstat file: its first two fields, in
// nanoseconds.
func parseSchedstat(s string) (run, wait time.Duration, err error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, 0, fmt.Errorf("schedstat %q: want 3 fields", s)
	}
	r, err1 := strconv.ParseInt(f[0], 10, 64)
	w, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || r < 0 || w < 0 {
		return 0, 0, fmt.Errorf("schedstat %q: bad times", s)
	}
	return time.Duration(r), time.Duration(w), nil
}

// parseSwitches sums the voluntary and involuntary context switches of a
// /proc status file.
func parseSwitches(status string) (int64, error) {
	var sum int64
	found := 0
	for _, line := range strings.Split(status, "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok || (key != "voluntary_ctxt_switches" && key != "nonvoluntary_ctxt_switches") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad %s %q", key, strings.TrimSpace(rest))
		}
		sum += n
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("no context switch counts")
	}
	return sum, nil
}
