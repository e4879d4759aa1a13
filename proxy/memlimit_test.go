package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
)

// The tuner sets a soft memory limit of at least the floor, and at least
// liveHeadroom times the live heap.
func TestTuneMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	// Some live data well above the floor's share.
	keep := make([][]byte, 0, 100)
	for range 100 {
		keep = append(keep, make([]byte, 1<<20))
	}
	runtime.GC()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // apply once, then return
	tuneMemoryLimit(ctx)
	got := debug.SetMemoryLimit(-1)
	if want := int64(liveHeadroom * 100 << 20); got < want {
		t.Errorf("limit %d MiB with 100 MiB live, want at least %d MiB", got>>20, want>>20)
	}
	runtime.KeepAlive(keep)
	runtime.GC()
	tuneMemoryLimit(ctx)
	if got := debug.SetMemoryLimit(-1); got != minMemoryLimit {
		t.Errorf("limit %d MiB with little live data, want the %d MiB floor", got>>20, minMemoryLimit>>20)
	}
}
