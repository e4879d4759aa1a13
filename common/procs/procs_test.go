package procs

import (
	"context"
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	tests := []struct {
		name  string
		procs int
		low   int
		used  float64
		max   int
		want  int
	}{
		{"busy one P grows", 1, 0, 0.9, 4, 2},
		{"busy at max stays", 4, 0, 3.9, 4, 4},
		{"moderate stays", 2, 0, 1.0, 4, 2},
		{"idle one P stays", 1, 0, 0.0, 4, 1},
		{"idle two Ps waits", 2, 0, 0.1, 4, 2},
		{"idle two Ps shrinks on third interval", 2, 2, 0.1, 4, 1},
		{"busy resets shrink count", 3, 2, 2.5, 4, 4},
		{"busy two Ps double", 2, 0, 1.8, 8, 4},
		{"doubling stops at max", 3, 0, 2.9, 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := state{procs: tt.procs, low: tt.low}
			if got := st.next(tt.used, tt.max); got != tt.want {
				t.Errorf("next(%v) from %d Ps = %d, want %d", tt.used, tt.procs, got, tt.want)
			}
		})
	}
}

// TestShrinkCountResets checks that one busy interval between idle ones
// restarts the count towards shrinking.
func TestShrinkCountResets(t *testing.T) {
	st := state{procs: 2}
	for _, used := range []float64{0.1, 0.1, 1.2, 0.1, 0.1} {
		if got := st.next(used, 2); got != 2 {
			t.Fatalf("shrank after a busy interval (used %v)", used)
		}
	}
	if got := st.next(0.1, 2); got != 1 {
		t.Fatalf("did not shrink after three idle intervals: %d", got)
	}
}

// TestRun drives a Scaler with a fake CPU clock: a busy process gets a
// second P, and the starting value comes back when Run ends.
func TestRun(t *testing.T) {
	var procs []int
	start := time.Now()
	s := &Scaler{
		max: 2,
		// Report CPU time running at 2 cores: always busy.
		cpu:    func() time.Duration { return 2 * time.Since(start) },
		set:    func(n int) int { procs = append(procs, n); return 0 },
		logger: discard(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), Interval+Interval/2)
	defer cancel()
	s.Run(ctx)
	want := []int{1, 2, 2}
	if len(procs) != len(want) {
		t.Fatalf("GOMAXPROCS settings %v, want %v", procs, want)
	}
	for i := range want {
		if procs[i] != want[i] {
			t.Fatalf("GOMAXPROCS settings %v, want %v", procs, want)
		}
	}
}

func TestNilScaler(t *testing.T) {
	var s *Scaler
	s.Run(context.Background()) // returns at once
}
