package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/snowflake-go/snowflake/bench/chain"
)

// windowEnd is what is read at one end of the aggregate window: the bytes
// moved so far and the components' resource use, at about one instant.
type windowEnd struct {
	at    time.Time
	bytes uint64
	use   map[string]chain.Usage
}

// readWindowEnd reads the components' use and takes the byte count and
// the time halfway through that reading: reading /proc for 50 clients
// takes a while, during which the transfers go on.
func readWindowEnd(total func() uint64, usage func() map[string]chain.Usage) windowEnd {
	b0, t0 := total(), time.Now()
	u := usage()
	b1, t1 := total(), time.Now()
	return windowEnd{at: t0.Add(t1.Sub(t0) / 2), bytes: b0 + (b1-b0)/2, use: u}
}

// measureWindow reads both ends of the aggregate window, window apart (or
// until ctx ends), and the rate in each seriesStep between them. closed
// runs after the window has closed: it reads the other counters (the
// server's metrics take an HTTP scrape), so their time and the transfers'
// progress meanwhile stay out of the components' figures per byte.
func measureWindow(ctx context.Context, window time.Duration, total func() uint64, usage func() map[string]chain.Usage, closed func()) (open, shut windowEnd, series []float64) {
	open = readWindowEnd(total, usage)
	series = sampleRates(ctx, window, total)
	shut = readWindowEnd(total, usage)
	closed()
	return open, shut, series
}

// usageReader is a process whose resource use can be read (a chain.Proc).
type usageReader interface {
	Usage() (chain.Usage, error)
}

// meterTransfer runs transfer and returns the CPU each component used
// meanwhile and how long it took. verify (checking what arrived, closing
// the stream) runs after the components have been read: hashing 100 MB in
// the harness takes a while, which is not the chain's.
func meterTransfer(comps map[string]usageReader, transfer, verify func() error) (map[string]time.Duration, time.Duration, error) {
	// A reading that failed would leave a zero to subtract, and the
	// process's whole life counted as the transfer's.
	before, err := readAll(comps)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	if err := transfer(); err != nil {
		return nil, 0, err
	}
	took := time.Since(start)
	after, err := readAll(comps)
	if err != nil {
		return nil, 0, err
	}
	if err := verify(); err != nil {
		return nil, 0, err
	}
	cpu := map[string]time.Duration{}
	for n := range comps {
		cpu[n] = after[n].CPU - before[n].CPU
	}
	return cpu, took, nil
}

// readAll reads the use of every component, or fails.
func readAll(comps map[string]usageReader) (map[string]chain.Usage, error) {
	m := map[string]chain.Usage{}
	for n, p := range comps {
		u, err := p.Usage()
		if err != nil {
			return nil, fmt.Errorf("CPU of the %s: %w", n, err)
		}
		m[n] = u
	}
	return m, nil
}

// clientPrefix starts the reading names of client processes, which
// useBetween sums as the component "clients".
const clientPrefix = "client:"

// useBetween returns what each component used between readings a and b,
// which map process names ("proxy", "server", clientPrefix+"3") to their
// use at that moment.
func useBetween(a, b map[string]chain.Usage) map[string]chain.Usage {
	out := map[string]chain.Usage{}
	for name, u1 := range b {
		u0, ok := a[name]
		if !ok {
			continue // a zero to subtract would count its whole life
		}
		comp := name
		if strings.HasPrefix(name, clientPrefix) {
			comp = "clients"
		}
		// Components are summed from each process's difference, so a
		// client read at one end only is left out of both ends.
		sum := out[comp]
		sum.CPU += u1.CPU - u0.CPU
		sum.Switches += u1.Switches - u0.Switches
		sum.RunQueueWait += u1.RunQueueWait - u0.RunQueueWait
		out[comp] = sum
	}
	return out
}

// awaitDownloads returns when the aggregate window may open: warmup after
// the last of want downloads started, or after timeout if some never do
// (or when ctx ends). It returns how many had started by then. Each
// download opens a session of its own, so they start over the time a
// rendezvous of that many takes: with Debian's proxy, which admits one
// client per 5 s poll, 10 downloads start over 50 s.
func awaitDownloads(ctx context.Context, started func() int64, want int64, timeout, warmup time.Duration) int64 {
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for started() < want {
		select {
		case <-tick.C:
		case <-deadline:
			break wait
		case <-ctx.Done():
			return started()
		}
	}
	select {
	case <-time.After(warmup):
	case <-ctx.Done():
	}
	return started()
}
