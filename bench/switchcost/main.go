// Command switchcost measures what it costs this machine to pass control
// from one process to another, and how that cost grows with the number of
// processes taking turns. It explains figures of `make bench` that depend
// on the machine rather than on Snowflake: a chain with 50 client
// processes switches between more processes than one with 10.
//
// It starts rings of processes (itself, re-executed) joined by pipes, all
// on one CPU: each process waits for a byte from the one before it and
// passes it to the next. The time per hop is one wake-up through the
// kernel and one switch of process, as a Snowflake client woken by a
// datagram pays. One CPU keeps a wake-up of the other CPU, which on a
// virtual machine measures how fast the host runs an idle virtual CPU, out
// of the figure.
//
//	go run ./bench/switchcost -n 2,13,53
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// memberEnv marks a re-executed process as a member of a ring.
const memberEnv = "SNOWFLAKE_SWITCHCOST_MEMBER"

// warmupLaps are run before the clock starts: the first laps include each
// member's start-up.
const warmupLaps = 50

func main() {
	if os.Getenv(memberEnv) == "1" {
		if err := member(); err != nil {
			fatal(err)
		}
		return
	}
	sizes := flag.String("n", "2,13,53", "ring sizes: how many processes take turns (2..500 each)")
	hops := flag.Int("hops", 20000, "hops timed per ring")
	flag.Parse()
	ns, err := parseSizes(*sizes)
	if err != nil {
		fatal(err)
	}
	if *hops < 1 {
		fatal(fmt.Errorf("bad -hops %d", *hops))
	}
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, n := range ns {
		per, err := measureRing(ctx, self, n, *hops)
		if err != nil {
			fatal(err)
		}
		fmt.Printf("%4d processes: %6.1f µs per hop\n", n, float64(per)/float64(time.Microsecond))
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "switchcost: %v\n", err)
	os.Exit(1)
}

func parseSizes(s string) ([]int, error) {
	var ns []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 || n > 500 {
			return nil, fmt.Errorf("bad ring size %q (2..500)", f)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// member is a ring member: it relays from the pipe on descriptor 3 to the
// one on descriptor 4, on the CPU of the rest of the ring.
func member() error {
	if err := pinToOneCPU(); err != nil {
		return err
	}
	return relay(os.NewFile(3, "in"), os.NewFile(4, "out"))
}

// relay passes each byte read from in to out, one at a time, until in
// ends.
func relay(in io.Reader, out io.Writer) error {
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(in, b); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("relay: read: %w", err)
		}
		if _, err := out.Write(b); err != nil {
			return fmt.Errorf("relay: write: %w", err)
		}
	}
}

// measureRing starts n-1 members of self and returns the mean time of one
// hop around a ring of them and this process, over about hops hops (whole
// laps, at least one). It pins this process to one CPU, as the members pin
// themselves. Every member has exited when it returns.
func measureRing(ctx context.Context, self string, n, hops int) (time.Duration, error) {
	if err := pinToOneCPU(); err != nil {
		return 0, err
	}
	// Pipe i carries the byte from process i to process i+1 (mod n);
	// this process is process 0.
	rs, ws := make([]*os.File, n), make([]*os.File, n)
	for i := range n {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(rs, ws)
			return 0, fmt.Errorf("ring of %d: %w", n, err)
		}
		rs[i], ws[i] = r, w
	}
	var members []*exec.Cmd
	defer func() {
		closeAll(rs, ws)
		for _, c := range members {
			c.Wait()
		}
	}()
	for i := 1; i < n; i++ {
		c := exec.CommandContext(ctx, self)
		c.Env = append(os.Environ(), memberEnv+"=1")
		c.ExtraFiles = []*os.File{rs[i-1], ws[i]}
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			return 0, fmt.Errorf("ring of %d: start member: %w", n, err)
		}
		members = append(members, c)
		// The member holds its ends now; the closed copies here let a
		// member that dies end the ring with EOF rather than hang it.
		rs[i-1].Close()
		ws[i].Close()
		rs[i-1], ws[i] = nil, nil
	}
	out, in := ws[0], rs[n-1]
	b := []byte{1}
	lap := func() error {
		if _, err := out.Write(b); err != nil {
			return err
		}
		_, err := io.ReadFull(in, b)
		return err
	}
	laps := max(1, hops/n)
	for range warmupLaps {
		if err := lap(); err != nil {
			return 0, fmt.Errorf("ring of %d: warm-up: %w", n, err)
		}
	}
	start := time.Now()
	for range laps {
		if err := lap(); err != nil {
			return 0, fmt.Errorf("ring of %d: %w", n, err)
		}
	}
	return time.Since(start) / time.Duration(laps*n), nil
}

func closeAll(lists ...[]*os.File) {
	for _, l := range lists {
		for i, f := range l {
			if f != nil {
				f.Close()
				l[i] = nil
			}
		}
	}
}

// pinToOneCPU binds every thread of the process to the first CPU it may
// use. Threads started later inherit the binding from the thread that
// starts them.
func pinToOneCPU() error {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	cpu := -1
	for i := range len(allowed) * 64 {
		if allowed.IsSet(i) {
			cpu = i
			break
		}
	}
	if cpu < 0 {
		return errors.New("pin: no CPU in the affinity mask")
	}
	var one unix.CPUSet
	one.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread that ended since the listing is no error.
		if err := unix.SchedSetaffinity(tid, &one); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d: %w", tid, err)
		}
	}
	return nil
}
