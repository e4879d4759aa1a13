package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
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

// The tuner follows the live heap after each collection, with no timer to
// wait for: a proxy whose clients arrive together would otherwise collect
// without pause under a limit set for its earlier heap.
func TestTuneMemoryLimitFollowsEachCollection(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tuneMemoryLimit(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	runtime.GC()
	keep := make([][]byte, 0, 100)
	for range 100 {
		keep = append(keep, make([]byte, 1<<20))
	}
	want := int64(liveHeadroom * 100 << 20)
	deadline := time.Now().Add(3 * time.Second)
	for debug.SetMemoryLimit(-1) < want {
		if time.Now().After(deadline) {
			t.Fatalf("limit %d MiB 3 s after 100 MiB became live, want at least %d MiB", debug.SetMemoryLimit(-1)>>20, want>>20)
		}
		// Each collection runs the tuner; the cleanup that does it runs
		// just after, on a goroutine of the runtime's.
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(keep)
}
