package main

import (
	"context"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
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
	tuneInterval   = 5 * time.Second
)

// tuneMemoryLimit adjusts the soft memory limit to the live heap until ctx
// is done. It is only started when neither GOGC nor GOMEMLIMIT is set.
func tuneMemoryLimit(ctx context.Context) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	set := int64(0)
	apply := func() {
		metrics.Read(sample)
		limit := int64(minMemoryLimit)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live := sample[0].Value.Uint64()
			if live < math.MaxInt64/liveHeadroom {
				limit = max(limit, int64(live)*liveHeadroom)
			}
		}
		if limit != set {
			debug.SetMemoryLimit(limit)
			set = limit
		}
	}
	apply()
	t := time.NewTicker(tuneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			apply()
		}
	}
}
