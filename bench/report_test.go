package main

import (
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
