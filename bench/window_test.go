package main

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/bench/chain"
)

// steadyChain is a fake chain moving bytes and burning CPU at constant
// rates: reading it at any instant gives the bytes and CPU up to then.
type steadyChain struct {
	start       time.Time
	bytesPerSec float64
	cpuPerSec   float64 // CPU seconds per second, for the one component

	mu     sync.Mutex
	delays time.Duration // how long a usage reading takes
}

func (c *steadyChain) total() uint64 {
	return uint64(time.Since(c.start).Seconds() * c.bytesPerSec)
}

// usage takes c.delays, like reading /proc for many processes, and reads
// the CPU halfway through.
func (c *steadyChain) usage() map[string]chain.Usage {
	c.mu.Lock()
	d := c.delays
	c.mu.Unlock()
	time.Sleep(d / 2)
	cpu := time.Duration(time.Since(c.start).Seconds() * c.cpuPerSec * float64(time.Second))
	time.Sleep(d / 2)
	return map[string]chain.Usage{"server": {CPU: cpu}}
}

// TestMeasureWindowCPUOverSameSpanAsBytes checks that the CPU divided by
// the bytes moved in the aggregate window was spent over the span of those
// bytes: not also while the server's metrics were scraped after the window,
// nor while /proc was being read.
func TestMeasureWindowCPUOverSameSpanAsBytes(t *testing.T) {
	for _, tc := range []struct {
		name         string
		usageTakes   time.Duration
		closingTakes time.Duration
	}{
		{"instant readings", 0, 0},
		{"slow metrics scrape after the window", 0, 300 * time.Millisecond},
		{"slow /proc readings", 120 * time.Millisecond, 0},
	} {
		c := &steadyChain{start: time.Now(), bytesPerSec: 50e6, cpuPerSec: 1.5, delays: tc.usageTakes}
		open, shut, _ := measureWindow(context.Background(), 400*time.Millisecond, c.total, c.usage,
			func() { time.Sleep(tc.closingTakes) })
		cpu := (shut.use["server"].CPU - open.use["server"].CPU).Seconds()
		moved := float64(shut.bytes - open.bytes)
		got := cpu * 100e6 / moved
		want := c.cpuPerSec * 100e6 / c.bytesPerSec // 3 s per 100 MB
		if math.Abs(got-want)/want > 0.1 {
			t.Errorf("%s: %.2f CPU s per 100 MB, want %.2f (CPU over %.0f ms, bytes over %.0f ms)",
				tc.name, got, want, cpu/c.cpuPerSec*1000, moved/c.bytesPerSec*1000)
		}
		took := shut.at.Sub(open.at).Seconds()
		if rate := moved / took; math.Abs(rate-c.bytesPerSec)/c.bytesPerSec > 0.1 {
			t.Errorf("%s: %.1f MB/s over the window, want %.1f", tc.name, rate/1e6, c.bytesPerSec/1e6)
		}
	}
}

// busyProc is a fake component that uses cpuPerSec CPU seconds per second
// since start; its first failReads readings fail.
type busyProc struct {
	start     time.Time
	cpuPerSec float64
	failReads int
}

func (p *busyProc) Usage() (chain.Usage, error) {
	if p.failReads > 0 {
		p.failReads--
		return chain.Usage{}, errors.New("open /proc/1/stat: no such file or directory")
	}
	return chain.Usage{CPU: time.Duration(time.Since(p.start).Seconds() * p.cpuPerSec * float64(time.Second))}, nil
}

// TestMeterTransferCPUOverTheTransfer checks that the bulk download's CPU
// is the CPU used while the bytes moved: not also while the harness checks
// the SHA-256 of 100 MB afterwards, and not the process's whole life when
// the first reading failed.
func TestMeterTransferCPUOverTheTransfer(t *testing.T) {
	const transferTakes, verifyTakes = 300 * time.Millisecond, 300 * time.Millisecond
	// The process has run (and used CPU) for 10 s before the transfer.
	p := &busyProc{start: time.Now().Add(-10 * time.Second), cpuPerSec: 1}
	cpu, took, err := meterTransfer(map[string]usageReader{"server": p},
		func() error { time.Sleep(transferTakes); return nil },
		func() error { time.Sleep(verifyTakes); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if d := cpu["server"] - took; d > 50*time.Millisecond || d < -50*time.Millisecond {
		t.Errorf("CPU %v over a transfer of %v at one core: the CPU was read over another span", cpu["server"], took)
	}

	failing := &busyProc{start: time.Now().Add(-10 * time.Second), cpuPerSec: 1, failReads: 1}
	cpu, _, err = meterTransfer(map[string]usageReader{"proxy": failing},
		func() error { time.Sleep(10 * time.Millisecond); return nil },
		func() error { return nil })
	if err == nil {
		t.Errorf("first reading failed, yet no error; CPU %v (the process's life, not the transfer's)", cpu["proxy"])
	}
}

// TestUseBetweenOnlyProcessesReadTwice checks that a process whose use
// could not be read at one end of a window adds nothing to its
// component's figure, rather than its whole life (missing at the start)
// or minus what it had used before (missing at the end).
func TestUseBetweenOnlyProcessesReadTwice(t *testing.T) {
	s := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
	start := map[string]chain.Usage{
		"server":           {CPU: s(40), Switches: 9000},
		clientPrefix + "1": {CPU: s(5), Switches: 1000},
		clientPrefix + "2": {CPU: s(6), Switches: 1000},
	}
	end := map[string]chain.Usage{
		"proxy":            {CPU: s(30), Switches: 7000}, // not read at the start
		"server":           {CPU: s(41), Switches: 9100},
		clientPrefix + "1": {CPU: s(5.5), Switches: 1050},
		// client 2 could not be read at the end
	}
	got := useBetween(start, end)
	if _, ok := got["proxy"]; ok {
		t.Errorf("proxy, read only at the end: got %+v, want no figure", got["proxy"])
	}
	if want := (chain.Usage{CPU: s(1), Switches: 100}); got["server"] != want {
		t.Errorf("server: got %+v, want %+v", got["server"], want)
	}
	if want := (chain.Usage{CPU: s(0.5), Switches: 50}); got["clients"] != want {
		t.Errorf("clients (client 2 read only at the start): got %+v, want %+v", got["clients"], want)
	}
}

// TestAwaitDownloadsWarmsUpAfterTheLastStart checks that the aggregate
// window opens the warm-up after the last download started, not after the
// downloads were asked for: each needs a session of its own, and Debian's
// proxy admits one per 5 s poll, so 10 of them start over 50 s.
func TestAwaitDownloadsWarmsUpAfterTheLastStart(t *testing.T) {
	const lastStarts, warmup = 400 * time.Millisecond, 200 * time.Millisecond
	begin := time.Now()
	// Four downloads, one every 100 ms.
	started := func() int64 { return min(4, int64(time.Since(begin)/(lastStarts/4))) }
	n := awaitDownloads(context.Background(), started, 4, 5*time.Second, warmup)
	took := time.Since(begin)
	if n != 4 {
		t.Errorf("window opened with %d of 4 downloads started", n)
	}
	if took < lastStarts+warmup {
		t.Errorf("window opened %v after the downloads were asked for; the last started at %v, so not before %v", took.Round(time.Millisecond), lastStarts, lastStarts+warmup)
	}

	// A download that never starts (its session failed) holds the window
	// back only until the timeout.
	begin = time.Now()
	n = awaitDownloads(context.Background(), func() int64 { return 3 }, 4, 300*time.Millisecond, warmup)
	if took := time.Since(begin); n != 3 || took > 300*time.Millisecond+warmup+200*time.Millisecond {
		t.Errorf("with a download that never started: %d started, window after %v", n, took.Round(time.Millisecond))
	}
}
