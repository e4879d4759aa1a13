package chain

import (
	"testing"
	"time"
)

// TestPercentileNearestRank checks the nearest-rank percentile: the
// smallest sample that at least p% of the samples do not exceed. With few
// samples (a short -rtt-samples run) p99 is the slowest round trip, not one
// in the middle.
func TestPercentileNearestRank(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	threeHundred := make([]int, 300)
	for i := range threeHundred {
		threeHundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 99, 0},
		{"one sample p50", ms(7), 50, 7 * time.Millisecond},
		{"one sample p99", ms(7), 99, 7 * time.Millisecond},
		{"three samples p50", ms(1, 2, 3), 50, 2 * time.Millisecond},
		{"three samples p99", ms(1, 2, 3), 99, 3 * time.Millisecond},
		{"two samples p50", ms(1, 9), 50, 1 * time.Millisecond},
		{"two samples p99", ms(1, 9), 99, 9 * time.Millisecond},
		{"ten samples p99", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"ten samples p50", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 50, 5 * time.Millisecond},
		{"hundred samples p99", ms(hundred...), 99, 99 * time.Millisecond},
		{"three hundred samples p99", ms(threeHundred...), 99, 297 * time.Millisecond},
		{"three hundred samples p50", ms(threeHundred...), 50, 150 * time.Millisecond},
		{"p0 is the minimum", ms(1, 2, 3), 0, 1 * time.Millisecond},
		{"p100 is the maximum", ms(1, 2, 3), 100, 3 * time.Millisecond},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: Percentile(%v, %v) = %v, want %v", tc.name, tc.sorted, tc.p, got, tc.want)
		}
	}
}
