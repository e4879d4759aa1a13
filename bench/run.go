package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snowflake-go/snowflake/bench/chain"
)

// concResult is one concurrent-clients measurement.
type concResult struct {
	n         int
	connected int
	ramp      time.Duration // until the last client had its first echo
	rampP50   time.Duration // until half of the clients had their first echo
	aggMBps   float64
	// cpuPer100 is CPU seconds per 100 MB during the aggregate window:
	// "clients" sums all client processes.
	cpuPer100 map[string]float64
	// switchesPerMB is context switches per MB during the aggregate
	// window, keyed as cpuPer100.
	switchesPerMB map[string]float64
	// runQueuePct is how long the component's threads waited for a CPU
	// while runnable during the aggregate window, in percent of the
	// window (250: two and a half threads waiting on average), keyed as
	// cpuPer100.
	runQueuePct map[string]float64
	// machineIdlePct is the share of all CPUs' time that was idle during
	// the aggregate window (-1: unknown). Idle CPUs while threads wait in
	// run queues point at the machine's scheduling, not at the chain.
	machineIdlePct float64
	// serverErrors are the server's error counters that grew during the
	// aggregate window (dropped packets show here).
	serverErrors map[string]float64
	// retransPct is the share of the server's KCP segments that were
	// retransmissions during the aggregate window (-1: not exported).
	retransPct float64
	// udpDropPct is the share of UDP datagrams in the namespace dropped
	// for a full socket receive buffer during the window (-1: unknown).
	udpDropPct float64
	// udpPerMB is how many UDP datagrams were delivered in the namespace
	// (both directions, every hop) per MB moved.
	udpPerMB float64
	// series is the aggregate in each seriesStep of the window, MB/s.
	series []float64
	// idleCPUPct is the CPU used while every client held a session and a
	// proxy and nothing moved, in percent of one core, keyed as cpuPer100:
	// for "clients" the average client process, for "proxy" and "server"
	// the whole process (much of which is not per client: the server's
	// background work after the bulk phase, for one).
	idleCPUPct map[string]float64
	// downloads is how many downloads had started when the aggregate
	// window opened.
	downloads int
	// staleSessions is how many sessions the server held, as the window
	// opened, beyond one per downloading client: sessions of clients that
	// have closed theirs or gone (-1: unknown). Such a session resends its
	// unacknowledged data into a queue nobody drains.
	staleSessions float64
}

// Metrics is a server metrics scrape (nil if the scrape failed).
type Metrics = chain.Metrics

// result holds the figures of one chain.
type result struct {
	name       string
	rendezvous time.Duration
	rttP50     time.Duration
	rttP99     time.Duration
	bulkMBps   float64
	cpuPer100  map[string]float64 // component -> CPU seconds per 100 MB
	peakRSS    map[string]int64   // component -> bytes
	conc       []concResult
	err        error
}

type flavorSpec struct {
	name                      string
	client, proxy             string
	clientFlavor, proxyFlavor chain.Flavor
	counts                    []int
}

func run(ctx context.Context, o options) error {
	var paths [4]string
	for i, n := range []string{"snowflake-server", "snowflake-broker", "snowflake-proxy", "snowflake-client"} {
		p, err := abs(o.bin, n)
		if err != nil {
			return err
		}
		paths[i] = p
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "snowflake-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	specs := []flavorSpec{{name: "ours", client: paths[3], proxy: paths[2], clientFlavor: chain.Ours, proxyFlavor: chain.Ours, counts: o.clients}}
	if !o.skipUpstream {
		specs = append(specs, flavorSpec{name: "debian-2.5.1", client: o.upClient, proxy: o.upProxy, clientFlavor: chain.Upstream, proxyFlavor: chain.Upstream, counts: o.upstreamCounts})
		if o.mixed {
			// One Debian component at a time, so each of ours is compared
			// with its Debian counterpart in an otherwise equal chain.
			specs = append(specs,
				flavorSpec{name: "debian-proxy", client: paths[3], proxy: o.upProxy, clientFlavor: chain.Ours, proxyFlavor: chain.Upstream},
				flavorSpec{name: "debian-client", client: o.upClient, proxy: paths[2], clientFlavor: chain.Upstream, proxyFlavor: chain.Ours})
		}
	}
	var results []*result
	for _, s := range specs {
		fmt.Fprintf(os.Stderr, "bench: measuring %s: %s client, %s proxy (our broker and server)\n", s.name, s.clientFlavor, s.proxyFlavor)
		r := measure(ctx, o, paths[0], paths[1], s)
		if r.err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", s.name, r.err)
		}
		results = append(results, r)
	}
	report(os.Stdout, o, results)
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s: %w", r.name, r.err)
		}
	}
	return nil
}

func measure(ctx context.Context, o options, server, broker string, s flavorSpec) *result {
	r := &result{name: s.name, cpuPer100: map[string]float64{}, peakRSS: map[string]int64{}}
	r.err = measureInto(ctx, o, server, broker, s, r)
	return r
}

func measureInto(ctx context.Context, o options, server, broker string, s flavorSpec, r *result) error {
	dir := filepath.Join(o.dir, s.name)
	c, err := chain.Start(ctx, chain.Config{Dir: dir, Server: server, Broker: broker, ServerMetrics: true})
	if err != nil {
		return err
	}
	defer c.Close()
	fail := func(err error, procs ...*chain.Proc) error {
		var b strings.Builder
		b.WriteString(err.Error())
		for _, p := range procs {
			fmt.Fprintf(&b, "\n--- %s ---\n%s", p.Name, p.Tail(15))
		}
		return errors.New(b.String())
	}
	proxy, err := c.StartProxy(ctx, chain.ProxyConfig{Path: s.proxy, Flavor: s.proxyFlavor})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = c.WaitProxies(wctx, 1)
	cancel()
	if err != nil {
		return fail(err, proxy)
	}
	cl, err := c.StartClient(ctx, chain.ClientConfig{Path: s.client, Flavor: s.clientFlavor})
	if err != nil {
		return err
	}

	// Rendezvous: median of three fresh sessions.
	var rv []time.Duration
	for range 3 {
		ectx, cancel := context.WithTimeout(ctx, 60*time.Second)
		d, err := chain.EchoOnce(ectx, cl)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("rendezvous: %w", err), cl.Proc, proxy)
		}
		rv = append(rv, d)
	}
	sort.Slice(rv, func(i, j int) bool { return rv[i] < rv[j] })
	r.rendezvous = rv[1]
	fmt.Fprintf(os.Stderr, "bench: %s: rendezvous %v\n", s.name, rv)

	// On the virtual machines this was measured on, wake-ups get faster
	// while traffic continues (likely the host's halt polling): the first
	// 500 echo round trips through our chain took 0.71–0.81 ms (p50),
	// those after two seconds of them 0.53–0.65 ms, and a 5 s pause before
	// starting did not help, so it is the traffic that warms, not time
	// since the rendezvous. Warming up first measures the chain, not how
	// recently the machine was busy.
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second+o.rttWarmup)
	if err := chain.Warm(rctx, cl, o.rttWarmup); err != nil {
		cancel()
		return fail(fmt.Errorf("rtt warm-up: %w", err), cl.Proc, proxy)
	}
	rtts, err := chain.RTT(rctx, cl, o.rttSamples)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("rtt: %w", err), cl.Proc, proxy)
	}
	r.rttP50, r.rttP99 = chain.Percentile(rtts, 50), chain.Percentile(rtts, 99)

	// Single-stream bulk with CPU accounting. The stream is opened (and the
	// session rendezvoused) before the CPU counters are read.
	size := uint64(o.sizeMB) * 1_000_000
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	conn, err := cl.Dial(bctx)
	if err != nil {
		return fail(err, cl.Proc)
	}
	if _, err := chain.Download(bctx, conn, 1, 0, 1, sha256.New(), nil); err != nil {
		conn.Close()
		return fail(fmt.Errorf("bulk warm-up: %w", err), cl.Proc, proxy)
	}
	conn.Close()
	conn, err = cl.Dial(bctx)
	if err != nil {
		return fail(err, cl.Proc)
	}
	defer conn.Close() // also when reading a component's CPU fails
	comps := map[string]usageReader{"client": cl.Proc, "proxy": proxy, "server": c.Server}
	h := sha256.New()
	cpu, el, err := meterTransfer(comps, func() error {
		_, err := chain.Download(bctx, conn, 42, 0, size, h, nil)
		if err != nil {
			conn.Close()
			return fail(err, cl.Proc, proxy, c.Server)
		}
		return nil
	}, func() error {
		conn.Close()
		if want := (chain.Pattern{Seed: 42}).SHA256(size); string(h.Sum(nil)) != string(want[:]) {
			return errors.New("SHA-256 mismatch")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bulk: %w", err)
	}
	r.bulkMBps = float64(size) / 1e6 / el.Seconds()
	// Every component or none: the report sums them.
	r.cpuPer100 = map[string]float64{}
	for n, d := range cpu {
		r.cpuPer100[n] = d.Seconds() * 100e6 / float64(size)
	}
	fmt.Fprintf(os.Stderr, "bench: %s: bulk %.1f MB/s\n", s.name, r.bulkMBps)
	cl.Stop(5 * time.Second)

	for _, n := range s.counts {
		cr, err := concurrent(ctx, o, c, proxy, s, n)
		if err != nil {
			return fail(fmt.Errorf("%d clients: %w", n, err), proxy)
		}
		fmt.Fprintf(os.Stderr, "bench: %s: %d clients: %d connected in %v (half in %v), %.1f MB/s aggregate over %d downloads, CPU s/100 MB: clients %.2f proxy %.2f server %.2f; context switches per MB: clients %.0f proxy %.0f server %.0f; run-queue wait: clients %.0f%% proxy %.0f%% server %.0f%%, machine idle %.1f%%; server retransmissions %.1f%%; stale server sessions %.0f; UDP datagrams per MB %.0f, receive-buffer drops %.2f%%; idle CPU: per client %.3f%%, proxy %.3f%%, server %.3f%%; MB/s per %v: %s\n", s.name, n, cr.connected, cr.ramp.Round(time.Millisecond), cr.rampP50.Round(time.Millisecond), cr.aggMBps, cr.downloads, cr.cpuPer100["clients"], cr.cpuPer100["proxy"], cr.cpuPer100["server"], cr.switchesPerMB["clients"], cr.switchesPerMB["proxy"], cr.switchesPerMB["server"], cr.runQueuePct["clients"], cr.runQueuePct["proxy"], cr.runQueuePct["server"], cr.machineIdlePct, cr.retransPct, cr.staleSessions, cr.udpPerMB, cr.udpDropPct, cr.idleCPUPct["clients"], cr.idleCPUPct["proxy"], cr.idleCPUPct["server"], seriesStep, formatRates(cr.series))
		for k, v := range cr.serverErrors {
			fmt.Fprintf(os.Stderr, "bench: %s: %d clients: server %s grew by %.0f\n", s.name, n, k, v)
		}
		r.conc = append(r.conc, cr)
	}

	for _, p := range []struct {
		name string
		p    *chain.Proc
	}{{"client", cl.Proc}, {"proxy", proxy}, {"server", c.Server}, {"broker", c.Broker}} {
		u, err := p.p.Usage()
		if err == nil {
			r.peakRSS[p.name] = u.PeakRSS
		}
	}
	return nil
}

// concurrent starts n client processes at once; it measures the time from
// then until each has a byte echoed through a proxy, then the aggregate
// throughput over o.window with every client downloading at once.
func concurrent(ctx context.Context, o options, c *chain.Chain, proxy *chain.Proc, s flavorSpec, n int) (concResult, error) {
	cr := concResult{n: n}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clients := make([]*chain.Client, n)
	var startErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := c.StartClient(ctx, chain.ClientConfig{Path: s.client, Flavor: s.clientFlavor})
			mu.Lock()
			defer mu.Unlock()
			if err != nil && startErr == nil {
				startErr = err
			}
			clients[i] = cl
		}()
	}
	wg.Wait()
	defer func() {
		var wg sync.WaitGroup
		for _, cl := range clients {
			if cl != nil {
				wg.Add(1)
				go func() { defer wg.Done(); cl.Stop(5 * time.Second) }()
			}
		}
		wg.Wait()
	}()
	if startErr != nil {
		return cr, startErr
	}
	// Ramp: every client connects and gets one echo back through its
	// proxy. Downloads start only once the ramp is over, so the clients'
	// own bulk traffic (on the same two cores, unlike real clients) does
	// not delay the connections being measured.
	// took is each client's time to its first echo, zero if it never got
	// one; held is the echo stream it keeps open until the idle window
	// is over. Both are written by the ramp goroutines, read after wg.Wait.
	took := make([]time.Duration, n)
	held := make([]net.Conn, n)
	releaseHeld := func() {
		for i, conn := range held {
			if conn != nil {
				conn.Close()
				held[i] = nil
			}
		}
	}
	defer releaseHeld()
	rampCtx, rampCancel := context.WithTimeout(ctx, o.rampTimeout)
	defer rampCancel()
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, _, err := chain.DialEcho(rampCtx, cl)
			if err != nil {
				return
			}
			held[i] = conn
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	rampCancel()
	var firsts []time.Duration
	for _, d := range took {
		if d > 0 {
			firsts = append(firsts, d)
		}
	}
	slices.Sort(firsts)
	cr.connected = len(firsts)
	if len(firsts) > 0 {
		cr.ramp = firsts[len(firsts)-1]
	}
	// Median over all n clients: undefined (zero) if fewer than half connected.
	if half := (n - 1) / 2; len(firsts) > half {
		cr.rampP50 = firsts[half]
	}
	reportLaggard(s.name, n, clients, took, cr.rampP50)
	if cr.connected == 0 {
		return cr, fmt.Errorf("no client connected within %v", o.rampTimeout)
	}

	// Idle cost: every client holds a session and a proxy (the ramp's echo
	// stream), nothing moves. With many clients on one machine this is what
	// is left of the CPU for the transfers. The downloads below open
	// sessions of their own (each stream is a session of its own, through
	// a proxy of its own), so the held ones are closed first.
	// usage reads every process; useBetween turns two readings into
	// figures per component.
	usage := func() map[string]chain.Usage {
		m := map[string]chain.Usage{}
		for name, p := range map[string]*chain.Proc{"proxy": proxy, "server": c.Server} {
			if u, err := p.Usage(); err == nil {
				m[name] = u
			}
		}
		for i, cl := range clients {
			if u, err := cl.Proc.Usage(); err == nil {
				m[clientPrefix+strconv.Itoa(i)] = u
			}
		}
		return m
	}
	select {
	case <-time.After(idleSettle):
	case <-ctx.Done():
	}
	idle0, idleT0 := usage(), time.Now()
	select {
	case <-time.After(idleWindow):
	case <-ctx.Done():
	}
	idle1, idleTook := usage(), time.Since(idleT0)
	cr.idleCPUPct = map[string]float64{}
	for comp, u := range useBetween(idle0, idle1) {
		pct := u.CPU.Seconds() / idleTook.Seconds() * 100
		if comp == "clients" {
			pct /= float64(n)
		}
		cr.idleCPUPct[comp] = pct
	}
	releaseHeld()

	// Aggregate: every connected client downloads o.streams endless
	// streams, each over a new session.
	var total atomic.Uint64
	var downloading atomic.Int64
	asked := 0
	for i, cl := range clients {
		if took[i] == 0 {
			continue
		}
		for range o.streams {
			asked++
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := cl.Dial(ctx)
				if err != nil {
					return
				}
				downloading.Add(1)
				chain.Download(ctx, conn, 7, 0, chain.MaxDownload, nopHash{}, func(k int) { total.Add(uint64(k)) })
				conn.Close()
			}()
		}
	}
	// Let the transfers settle before the window opens: 50 clients
	// started at once spend their first seconds growing 50 fresh heaps
	// (page faults) and retransmitting their first windows, at about half
	// of the rate that follows (see the series with a long -window).
	cr.downloads = int(awaitDownloads(ctx, downloading.Load, int64(asked), o.rampTimeout, o.aggWarmup))
	if cr.downloads < asked {
		fmt.Fprintf(os.Stderr, "bench: %s: %d clients: only %d of %d downloads started within %v; the window measures those\n", s.name, n, cr.downloads, asked, o.rampTimeout)
	}
	errs := func() Metrics {
		m, _ := chain.ScrapeMetrics(ctx, c.ServerMetricsURL())
		return Metrics(m)
	}
	errs0 := errs()
	cr.staleSessions = -1
	if errs0 != nil {
		cr.staleSessions = errs0.Sum("snowflake_server_sessions") - float64(downloading.Load())
	}
	udp0, udpErr := readUDPCounters()
	cpu0, cpuErr := readCPUTimes()
	// The machine's and the namespace's counters are read right after
	// the window closes, and the server's metrics (an HTTP scrape) last.
	var (
		errs1            Metrics
		cpu1             cpuTimes
		udp1             udpCounters
		cpu1Err, udp1Err error
	)
	open, shut, series := measureWindow(ctx, o.window, total.Load, usage, func() {
		cpu1, cpu1Err = readCPUTimes()
		udp1, udp1Err = readUDPCounters()
		errs1 = errs()
	})
	cr.series = series
	moved := shut.bytes - open.bytes
	window := shut.at.Sub(open.at)
	cr.aggMBps = float64(moved) / 1e6 / window.Seconds()
	cr.machineIdlePct = -1
	if cpu1Err == nil && cpuErr == nil {
		cr.machineIdlePct = idlePct(cpu0, cpu1)
	}
	cr.udpDropPct = -1
	if udp1Err == nil && udpErr == nil {
		drops := udp1.rcvbufDrops - udp0.rcvbufDrops
		if all := udp1.received - udp0.received + drops; all > 0 {
			cr.udpDropPct = float64(drops) / float64(all) * 100
		}
		if moved > 0 {
			cr.udpPerMB = float64(udp1.received-udp0.received) / (float64(moved) / 1e6)
		}
	}
	cr.serverErrors = map[string]float64{}
	for k, v := range errs1 {
		if strings.HasPrefix(k, "snowflake_server_errors_total{") && v > errs0[k] {
			cr.serverErrors[k] = v - errs0[k]
		}
	}
	cr.retransPct = -1
	const sent, resent = `snowflake_server_kcp_segments_total{kind="sent"}`, `snowflake_server_kcp_segments_total{kind="retransmitted"}`
	if d := errs1[sent] - errs0[sent]; d > 0 {
		cr.retransPct = (errs1[resent] - errs0[resent]) / d * 100
	}
	if moved > 0 {
		cr.cpuPer100 = map[string]float64{}
		cr.switchesPerMB = map[string]float64{}
		cr.runQueuePct = map[string]float64{}
		for name, u := range useBetween(open.use, shut.use) {
			cr.cpuPer100[name] = u.CPU.Seconds() * 100e6 / float64(moved)
			cr.switchesPerMB[name] = float64(u.Switches) / (float64(moved) / 1e6)
			cr.runQueuePct[name] = u.RunQueueWait.Seconds() / window.Seconds() * 100
		}
	}
	cancel()
	wg.Wait()
	return cr, nil
}

// laggardAfter is how long past the median first echo a client may take
// before the ramp names it and shows its log: one slow client sets the
// ramp time, and its log says whether it waited for the broker, a proxy or
// the session.
const laggardAfter = 5 * time.Second

// reportLaggard prints the log tail of the slowest client of a ramp if it
// connected laggardAfter later than the median, or of one that never did
// (took zero).
func reportLaggard(flavor string, n int, clients []*chain.Client, took []time.Duration, median time.Duration) {
	worst := -1
	for i := range clients {
		if clients[i] == nil {
			continue
		}
		if took[i] == 0 {
			worst = i
			break
		}
		if took[i] > median+laggardAfter && (worst < 0 || took[i] > took[worst]) {
			worst = i
		}
	}
	if worst < 0 {
		return
	}
	what := "never connected"
	if took[worst] > 0 {
		what = fmt.Sprintf("connected after %v", took[worst].Round(time.Millisecond))
	}
	fmt.Fprintf(os.Stderr, "bench: %s: %d clients: %s %s (median %v); its log ends:\n%s\n",
		flavor, n, clients[worst].Name, what, median.Round(time.Millisecond), clients[worst].Tail(20))
}

// The idle CPU of connected clients is measured over idleWindow, after
// idleSettle: the first seconds after a ramp are not idle yet.
const (
	idleSettle = 2 * time.Second
	idleWindow = 2 * time.Second
)

// nopHash discards what it is given; concurrent downloads are not checked
// (the bulk download is), so their hashing would only add CPU noise.
type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return 0 }
func (nopHash) BlockSize() int              { return 1 }

// seriesStep is the span of each figure of concResult.series.
const seriesStep = 2 * time.Second

// sampleRates waits for window (or ctx) and returns the rate of total, in
// MB/s, over each seriesStep of it.
func sampleRates(ctx context.Context, window time.Duration, total func() uint64) []float64 {
	var rates []float64
	end := time.Now().Add(window)
	last, lastT := total(), time.Now()
	for {
		step := min(seriesStep, time.Until(end))
		if step <= 0 {
			return rates
		}
		select {
		case <-time.After(step):
		case <-ctx.Done():
			return rates
		}
		now, t := total(), time.Now()
		rates = append(rates, float64(now-last)/1e6/t.Sub(lastT).Seconds())
		last, lastT = now, t
	}
}

func formatRates(r []float64) string {
	parts := make([]string, len(r))
	for i, v := range r {
		parts[i] = fmt.Sprintf("%.1f", v)
	}
	return strings.Join(parts, " ")
}
