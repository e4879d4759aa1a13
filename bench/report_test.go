package main

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestReportConcurrentRows(t *testing.T) {
	conc := func(n int, agg float64) concResult {
		return concResult{
			n: n, connected: n, ramp: time.Second, rampP50: time.Second / 2, aggMBps: agg,
			switchesPerMB:  map[string]float64{"clients": 80, "proxy": 23, "server": 14},
			runQueuePct:    map[string]float64{"clients": 270, "proxy": 44, "server": 33},
			machineIdlePct: 10.8,
			retransPct:     -1,
			idleCPUPct:     map[string]float64{"clients": 0.09, "proxy": 1.3, "server": 1.3},
		}
	}
	ours := &result{name: "ours", bulkMBps: 49, cpuPer100: map[string]float64{"client": 1, "proxy": 1.3, "server": 0.4},
		conc: []concResult{conc(10, 52.7), conc(50, 43.5)}}
	for _, tc := range []struct {
		streams   int
		wantCheck bool
	}{{1, true}, {5, false}} {
		var b strings.Builder
		report(&b, options{streams: tc.streams, window: 15 * time.Second}, []*result{ours})
		out := b.String()
		for _, want := range []string{
			"50 clients: run-queue wait, clients", "270 %",
			"50 clients: machine idle", "10.8 %",
			"10 clients: context switches per MB, proxy",
			"50 clients: idle CPU per client", "10 clients: idle CPU, server",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("streams %d: report lacks %q:\n%s", tc.streams, want, out)
			}
		}
		if !regexp.MustCompile(`50 clients: server retransmissions +-\n`).MatchString(out) {
			t.Errorf("streams %d: a retransmission share of -1 (unknown) was not shown as missing:\n%s", tc.streams, out)
		}
		check := "[MISS] aggregate with 50 clients >= with 10: 43.5 vs 52.7 MB/s"
		if got := strings.Contains(out, check); got != tc.wantCheck {
			t.Errorf("streams %d: 50-versus-10 check shown %v, want %v:\n%s", tc.streams, got, tc.wantCheck, out)
		}
	}
}

// TestReportTargetsOfFailedChain checks that a chain that failed before a
// figure was measured has that target marked as not measured, with the
// error, rather than judged on zeros or on part of the components.
func TestReportTargetsOfFailedChain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ours   *result
		noBulk bool // the bulk download was not measured either
	}{
		{"failed to start", &result{name: "ours", cpuPer100: map[string]float64{}, peakRSS: map[string]int64{},
			err: errors.New("chain: start server: fork/exec bin/snowflake-server: no such file or directory")}, true},
		// The bulk download's CPU was filled in component by component
		// until one could not be read.
		{"failed reading the proxy's CPU", &result{name: "ours", bulkMBps: 40, cpuPer100: map[string]float64{"client": 1.1}, peakRSS: map[string]int64{},
			err: errors.New("chain: usage: open /proc/123/stat: no such file or directory")}, false},
	} {
		var b strings.Builder
		report(&b, options{streams: 1}, []*result{tc.ours})
		out := b.String()
		bad := []string{"[MET ] CPU per 100 MB", "[MISS] CPU per 100 MB"}
		want := []string{"CPU per 100 MB (client+proxy+server) <= 3.7 s: not measured"}
		if tc.noBulk {
			bad = append(bad, "bulk >= 36 MB/s: 0.0 MB/s", "[MISS] bulk")
			want = append(want, "bulk >= 36 MB/s: not measured")
		} else if !strings.Contains(out, "[MET ] bulk >= 36 MB/s: 40.0 MB/s") {
			t.Errorf("%s: the measured bulk rate is not judged:\n%s", tc.name, out)
		}
		for _, bad := range bad {
			if strings.Contains(out, bad) {
				t.Errorf("%s: report judges a figure never measured (%q):\n%s", tc.name, bad, out)
			}
		}
		for _, want := range want {
			if !strings.Contains(out, want) {
				t.Errorf("%s: report lacks %q:\n%s", tc.name, want, out)
			}
		}
	}
}
