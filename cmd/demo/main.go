// Command demo shows the whole Snowflake chain working on loopback: it starts
// a broker, a bridge server, three proxies and a client (standalone, no tor),
// downloads a file through the tunnel from a local sink with a live progress
// bar, kills the proxy that is carrying the session halfway through, checks
// the SHA-256 of what arrived, and prints a summary with the resource use of
// every component. It exits non-zero, with the log tail of the component
// that failed, when anything goes wrong.
//
// `make demo` builds the binaries into bin/ and runs this program.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snowflake-go/snowflake/bench/chain"
)

type options struct {
	bin     string
	dir     string
	sizeMB  int
	proxies int
	noKill  bool
	timeout time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory holding snowflake-server, -broker, -proxy and -client")
	flag.StringVar(&o.dir, "dir", "", "working directory for logs (default: a new temporary directory, removed on success)")
	flag.IntVar(&o.sizeMB, "size", 100, "download size in MB")
	flag.IntVar(&o.proxies, "proxies", 3, "number of proxies")
	flag.BoolVar(&o.noKill, "no-kill", false, "do not kill the serving proxy halfway")
	flag.DurationVar(&o.timeout, "timeout", 110*time.Second, "give up after this long")
	flag.Parse()
	if o.sizeMB <= 0 || o.proxies < 1 || (!o.noKill && o.proxies < 2) {
		fmt.Fprintln(os.Stderr, "demo: need -size > 0 and at least 2 proxies (1 with -no-kill)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	keep := o.dir != ""
	if o.dir == "" {
		d, err := os.MkdirTemp("", "snowflake-demo-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			os.Exit(1)
		}
		o.dir = d
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: FAILED: %v\n(logs kept in %s)\n", err, o.dir)
		os.Exit(1)
	}
	if !keep {
		os.RemoveAll(o.dir)
	}
}

// failure names the component whose log explains an error.
type failure struct {
	err   error
	procs []*chain.Proc
}

func (f *failure) Error() string {
	var b strings.Builder
	b.WriteString(f.err.Error())
	for _, p := range f.procs {
		fmt.Fprintf(&b, "\n--- last lines of %s (%s) ---\n%s", p.Name, p.LogPath, p.Tail(20))
	}
	return b.String()
}

func (f *failure) Unwrap() error { return f.err }

func blame(err error, procs ...*chain.Proc) error {
	var ps []*chain.Proc
	for _, p := range procs {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return &failure{err: err, procs: ps}
}

func run(ctx context.Context, o options) error {
	binPath := func(name string) (string, error) {
		p, err := filepath.Abs(filepath.Join(o.bin, name))
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w (run `make build`)", name, err)
		}
		return p, nil
	}
	var bins [4]string
	for i, n := range []string{"snowflake-server", "snowflake-broker", "snowflake-proxy", "snowflake-client"} {
		p, err := binPath(n)
		if err != nil {
			return err
		}
		bins[i] = p
	}
	fmt.Printf("Snowflake demo: broker, bridge server, %d proxies and a client on loopback (logs in %s)\n", o.proxies, o.dir)

	start := time.Now()
	c, err := chain.Start(ctx, chain.Config{Dir: o.dir, Server: bins[0], Broker: bins[1]})
	if err != nil {
		return blame(fmt.Errorf("starting server and broker: %w", err), procsOf(c)...)
	}
	defer c.Close()
	fmt.Printf("  server  %s (pid %d)\n  broker  %s (pid %d)\n", c.ServerWS, c.Server.PID(), c.BrokerURL, c.Broker.PID())
	var proxies []*chain.Proc
	for range o.proxies {
		p, err := c.StartProxy(ctx, chain.ProxyConfig{Path: bins[2], Flavor: chain.Ours, Capacity: 10})
		if err != nil {
			return blame(err, c.Procs()...)
		}
		proxies = append(proxies, p)
	}
	if err := c.WaitProxies(ctx, o.proxies); err != nil {
		return blame(err, append([]*chain.Proc{c.Broker}, proxies...)...)
	}
	fmt.Printf("  %d proxies polling the broker\n", o.proxies)
	cl, err := c.StartClient(ctx, chain.ClientConfig{Path: bins[3], Flavor: chain.Ours})
	if err != nil {
		return blame(err, c.Procs()...)
	}
	fmt.Printf("  client  SOCKS5 %s (pid %d)\n", cl.SOCKS, cl.PID())

	// Rendezvous: from the SOCKS request to the first echoed byte, i.e.
	// broker round trip, WebRTC connection, WebSocket, KCP and smux.
	rendezvous, err := chain.EchoOnce(ctx, cl)
	if err != nil {
		return blame(fmt.Errorf("first stream through the tunnel: %w", err), cl.Proc, c.Broker, c.Server)
	}
	fmt.Printf("  rendezvous + first round trip: %v\n", rendezvous.Round(time.Millisecond))

	size := uint64(o.sizeMB) * 1_000_000
	const seed = 0x5eed
	var received atomic.Uint64
	var killed atomic.Pointer[chain.Proc]
	dlCtx, dlCancel := context.WithCancel(ctx)
	defer dlCancel()
	progressDone := make(chan struct{})
	dlStart := time.Now()
	go func() {
		defer close(progressDone)
		progress(dlCtx, size, &received, dlStart)
	}()
	killErr := make(chan error, 1)
	go func() {
		if o.noKill {
			killErr <- nil
			return
		}
		killErr <- killHalfway(dlCtx, size, &received, proxies, &killed)
	}()
	conn, err := cl.Dial(ctx)
	if err != nil {
		dlCancel()
		<-progressDone
		return blame(fmt.Errorf("download stream: %w", err), cl.Proc)
	}
	h := sha256.New()
	_, err = chain.Download(ctx, conn, seed, 0, size, h, func(n int) { received.Add(uint64(n)) })
	conn.Close()
	elapsed := time.Since(dlStart)
	dlCancel()
	<-progressDone
	kerr := <-killErr
	fmt.Println()
	if err != nil {
		return blame(fmt.Errorf("download: %w", err), append([]*chain.Proc{cl.Proc, c.Server}, proxies...)...)
	}
	if kerr != nil && !errors.Is(kerr, context.Canceled) {
		return blame(kerr, proxies...)
	}
	got := h.Sum(nil)
	want := chain.Pattern{Seed: seed}.SHA256(size)
	if !equal(got, want[:]) {
		return blame(fmt.Errorf("SHA-256 mismatch: got %x, want %x", got, want), cl.Proc, c.Server)
	}

	// Summary.
	fmt.Printf("\nSUCCESS: %d MB verified, SHA-256 %s\n", o.sizeMB, hex.EncodeToString(got))
	fmt.Printf("  rendezvous            %v\n", rendezvous.Round(time.Millisecond))
	fmt.Printf("  throughput            %.1f MB/s (%v for %d MB)\n", float64(size)/1e6/elapsed.Seconds(), elapsed.Round(time.Millisecond), o.sizeMB)
	var used []string
	for _, p := range proxies {
		if p.Seen("client connected") {
			name := p.Name
			if p == killed.Load() {
				name += " (killed halfway)"
			}
			used = append(used, name)
		}
	}
	sort.Strings(used)
	fmt.Printf("  proxies used          %s\n", strings.Join(used, ", "))
	fmt.Printf("  %-22s %10s %10s\n", "component", "CPU", "peak RSS")
	for _, p := range c.Procs() {
		u, err := p.Usage()
		if err != nil {
			continue
		}
		fmt.Printf("  %-22s %9.2fs %8.1fMB\n", p.Name, u.CPU.Seconds(), float64(u.PeakRSS)/1e6)
	}
	fmt.Printf("  total wall time       %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func procsOf(c *chain.Chain) []*chain.Proc {
	if c == nil {
		return nil
	}
	return c.Procs()
}

func equal(a, b []byte) bool { return string(a) == string(b) }

// killHalfway SIGKILLs the proxy that carries the session once half of the
// download has arrived.
func killHalfway(ctx context.Context, size uint64, received *atomic.Uint64, proxies []*chain.Proc, killed *atomic.Pointer[chain.Proc]) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for received.Load() < size/2 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	p, err := chain.ServingProxy(proxies)
	if err != nil {
		return fmt.Errorf("halfway: %w", err)
	}
	p.Kill()
	killed.Store(p)
	fmt.Printf("\r\033[K  killed %s (pid %d) at %d%%; the session moves to another proxy\n", p.Name, p.PID(), received.Load()*100/size)
	return nil
}

// progress draws a progress bar until ctx ends.
func progress(ctx context.Context, size uint64, received *atomic.Uint64, start time.Time) {
	const width = 40
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	draw := func() {
		n := received.Load()
		frac := float64(n) / float64(size)
		filled := int(frac * width)
		el := time.Since(start).Seconds()
		rate := 0.0
		if el > 0 {
			rate = float64(n) / 1e6 / el
		}
		fmt.Fprintf(os.Stdout, "\r\033[K  [%s%s] %5.1f%%  %6.1f MB  %5.1f MB/s",
			strings.Repeat("#", filled), strings.Repeat(".", width-filled), frac*100, float64(n)/1e6, rate)
	}
	for {
		select {
		case <-ctx.Done():
			draw()
			return
		case <-t.C:
			draw()
		}
	}
}
