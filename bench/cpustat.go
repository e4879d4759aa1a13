package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// cpuTimes are the machine-wide CPU times of /proc/stat, in clock ticks.
type cpuTimes struct {
	idle  uint64 // idle and iowait
	total uint64 // every state
}

// readCPUTimes reads the first ("cpu") line of /proc/stat.
func readCPUTimes() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, fmt.Errorf("cpu times: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

// parseCPULine parses "cpu  user nice system idle iowait irq softirq steal
// guest guest_nice". Guest time is already counted in user and nice, so
// only the first eight fields are summed; kernels older than 2.6.11 give
// fewer, which is fine as long as idle is there.
func parseCPULine(line string) (cpuTimes, error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("cpu times: unexpected line %q", line)
	}
	var t cpuTimes
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("cpu times: field %d of %q: %w", i+1, line, err)
		}
		t.total += v
		if i == 3 || i == 4 {
			t.idle += v
		}
	}
	return t, nil
}

// idlePct is the share of all CPUs' time that was idle between a and b.
func idlePct(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.idle-a.idle) / float64(b.total-a.total) * 100
}
