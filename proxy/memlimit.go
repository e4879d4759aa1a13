package main

import (
	"context"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// Memory tuning. GOGC=400 (set in run) keeps the collector cheap, but on
// its own it lets the heap grow to five times the live data: with 50 busy
// clients that was half a gigabyte. A soft memory limit caps the heap at
// minMemoryLimit, so a loaded proxy collects more often instead of growing.
// The limit follows the live heap (liveHeadroom times it) so a large proxy
// whose live data passes the floor keeps the GOGC=200 trade-off rather than
// collecting without pause. With 50 busy clients (live heap ~55 MB), twice
// the live heap had the proxy collect every 35–45 MB allocated; three times
// cut its CPU per byte by 14–22% and raised the 50 clients' aggregate by
// 9–17% (four pairs of go run ./bench -clients 10,50), for a peak RSS of
// 188–211 MB instead of 129–139 MB. Below ~37 MB of live data the floor
// decides, so lighter loads are unchanged.
const (
	minMemoryLimit = 112 << 20
	liveHeadroom   = 3
)

// tuneMemoryLimit keeps the soft memory limit at liveHeadroom times the live
// heap, and at least minMemoryLimit, until ctx is done. It is only started
// when neither GOGC nor GOMEMLIMIT is set.
//
// The limit is set again after every collection: the live heap is known
// then, and only then does the limit matter, so an idle proxy pays nothing
// for the tuning. A timer was too slow: when 50 clients began downloading
// at once, the live heap grew from 25 to 60 MB within 2 s while the limit,
// checked every 5 s, stayed at the floor, and the proxy collected without
// pause, 20–27% of its CPU for about 4 s.
func tuneMemoryLimit(ctx context.Context) {
	var afterGC func(struct{})
	afterGC = func(struct{}) {
		if ctx.Err() != nil {
			return
		}
		applyMemoryLimit()
		watchNextGC(afterGC)
	}
	applyMemoryLimit()
	watchNextGC(afterGC)
	<-ctx.Done()
}

// watchNextGC has f called after the next collection. The object it
// allocates is unreachable at once, so the collection frees it and the
// runtime runs its cleanup, f. It is larger than the runtime's tiny
// allocations, which share a block and are freed together.
func watchNextGC(f func(struct{})) {
	runtime.AddCleanup(new([64]byte), f, struct{}{})
}

// applyMemoryLimit sets the limit for the current live heap.
func applyMemoryLimit() {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	limit := int64(minMemoryLimit)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		live := sample[0].Value.Uint64()
		if live < math.MaxInt64/liveHeadroom {
			limit = max(limit, int64(live)*liveHeadroom)
		}
	}
	// A negative argument reads the limit without changing it.
	if debug.SetMemoryLimit(-1) != limit {
		debug.SetMemoryLimit(limit)
	}
}
