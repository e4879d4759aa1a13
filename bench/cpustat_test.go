package main

import "testing"

func TestParseCPULine(t *testing.T) {
	for _, tc := range []struct {
		name, line  string
		idle, total uint64
		ok          bool
	}{
		{"current", "cpu  100 5 50 800 20 3 7 15 9 1", 820, 1000, true},
		{"no guest fields", "cpu 100 5 50 800 20 3 7 15", 820, 1000, true},
		{"old kernel", "cpu 10 0 10 80", 80, 100, true},
		{"per-cpu line", "cpu0 100 5 50 800 20 3 7 15 0 0", 0, 0, false},
		{"too short", "cpu 1 2 3", 0, 0, false},
		{"not a number", "cpu 1 2 x 4 5", 0, 0, false},
		{"negative", "cpu 1 2 -3 4 5", 0, 0, false},
		{"empty", "", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCPULine(tc.line)
			if (err == nil) != tc.ok || got.idle != tc.idle || got.total != tc.total {
				t.Fatalf("parseCPULine(%q) = %+v, %v; want idle %d total %d, ok %v", tc.line, got, err, tc.idle, tc.total, tc.ok)
			}
		})
	}
}

func TestIdlePct(t *testing.T) {
	a := cpuTimes{idle: 100, total: 1000}
	if got := idlePct(a, cpuTimes{idle: 150, total: 1200}); got != 25 {
		t.Fatalf("idlePct = %v, want 25", got)
	}
	if got := idlePct(a, a); got != 0 {
		t.Fatalf("idlePct over no time = %v, want 0", got)
	}
}
