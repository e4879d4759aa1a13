// Command bench is the side-by-side chain harness behind `make bench`. It
// starts whole Snowflake chains on loopback from given binaries (our
// broker and server always; our client and proxy, then Debian's 2.5.1
// snowflake-client and snowflake-proxy) and measures rendezvous time, RTT
// p50/p99, single-stream bulk throughput, CPU seconds per 100 MB and peak
// RSS per component, and 1/10/50 concurrent clients (ramp time, aggregate
// throughput, CPU and context switches per MB, how long threads waited
// for a CPU and how idle the machine was meanwhile, and what holding the
// clients costs each component while nothing moves). It prints one table
// per chain and the ratios between them; a client that connects far later
// than the others has its log tail printed.
//
// Debian's binaries fall back to public hosts, so the harness re-executes
// itself in a new network namespace with only loopback (needs root and
// unshare) before starting anything.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/snowflake-go/snowflake/internal/childproc"
)

// netnsMarker tells the re-executed harness that it runs isolated.
const netnsMarker = "SNOWFLAKE_BENCH_NETNS"

type options struct {
	bin            string
	upClient       string
	upProxy        string
	sizeMB         int
	rttSamples     int
	rttWarmup      time.Duration
	aggWarmup      time.Duration
	clients        []int
	upstreamCounts []int
	window         time.Duration
	rampTimeout    time.Duration
	streams        int // downloads per client process in the aggregate phase
	skipUpstream   bool
	mixed          bool
	dir            string
}

func main() {
	var o options
	var clients, upClients string
	flag.StringVar(&o.bin, "bin", "bin", "directory with our snowflake-server, -broker, -proxy and -client")
	flag.StringVar(&o.upClient, "upstream-client", "/usr/bin/snowflake-client", "Debian's snowflake-client")
	flag.StringVar(&o.upProxy, "upstream-proxy", "/usr/bin/snowflake-proxy", "Debian's snowflake-proxy")
	flag.IntVar(&o.sizeMB, "size", 100, "single-stream bulk download size in MB")
	flag.IntVar(&o.rttSamples, "rtt-samples", 300, "echo round trips for the RTT percentiles")
	flag.DurationVar(&o.rttWarmup, "rtt-warmup", 2*time.Second, "echo round trips, not counted, before the RTT samples (every chain alike)")
	flag.StringVar(&clients, "clients", "1,10,50", "concurrent client counts (our chain)")
	flag.StringVar(&upClients, "upstream-clients", "1,10", "concurrent client counts for the Debian chain (its proxy admits one client per 5 s poll, so 50 would take minutes)")
	flag.DurationVar(&o.window, "window", 8*time.Second, "measurement window for aggregate throughput")
	flag.DurationVar(&o.aggWarmup, "agg-warmup", 10*time.Second, "transfer time, not counted, before the aggregate window opens (every client count and chain alike)")
	flag.DurationVar(&o.rampTimeout, "ramp-timeout", 90*time.Second, "give up waiting for concurrent clients to connect after this long")
	flag.IntVar(&o.streams, "streams-per-client", 1, "downloads each client process runs at once in the aggregate phase, each over a session and proxy of its own; above 1, n clients carry n×k sessions in n processes, which tells the cost of many client processes sharing the machine from that of many sessions (the targets assume 1)")
	flag.BoolVar(&o.skipUpstream, "skip-upstream", false, "measure only our binaries")
	flag.BoolVar(&o.mixed, "mixed", true, "also measure our client with Debian's proxy and Debian's client with our proxy (single client)")
	flag.StringVar(&o.dir, "dir", "", "working directory for logs (default: temporary, removed afterwards)")
	flag.Parse()
	var err error
	if o.clients, err = parseCounts(clients); err != nil {
		fatal(err)
	}
	if o.upstreamCounts, err = parseCounts(upClients); err != nil {
		fatal(err)
	}
	if o.streams < 1 || o.streams > 20 {
		fatal(fmt.Errorf("bad -streams-per-client %d (1..20)", o.streams))
	}
	if os.Getenv(netnsMarker) != "1" {
		// Resolve paths before the re-exec so that relative -bin works.
		if err := isolate(); err != nil {
			fatal(err)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	os.Exit(1)
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 500 {
			return nil, fmt.Errorf("bad client count %q (1..500)", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// isolate re-runs this program inside a new network namespace that has only
// the loopback interface, and exits with its status.
func isolate() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root to create a network namespace (Debian's binaries must not reach the network)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("ip: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	wd, _ := os.Getwd()
	args := []string{"--net", "--", "sh", "-c", ip + ` link set lo up && exec "$0" "$@"`, self}
	args = append(args, os.Args[1:]...)
	cmd := exec.Command(unshare, args...)
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), netnsMarker+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := runIsolated(cmd); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		return err
	}
	return nil
}

// runIsolated runs the re-executed harness and waits for it. An interrupt
// or termination of this process is passed on, and this process waits for
// the harness to clean up its chain before it ends, so that whoever waits
// for it does not return while the chain is still up. If this process is
// killed, the harness gets SIGTERM from the kernel (which cleans up the
// same way); before, it ran its whole benchmark on in the background.
func runIsolated(cmd *exec.Cmd) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := childproc.Start(cmd); err != nil {
		return fmt.Errorf("start the isolated harness: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			return err
		case s := <-sigs:
			cmd.Process.Signal(s)
		}
	}
}

func abs(dir, name string) (string, error) {
	p, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w (run `make build`)", err)
	}
	return p, nil
}
