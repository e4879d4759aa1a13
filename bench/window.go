package main

import (
	"context"
	"time"

	"github.com/snowflake-go/snowflake/bench/chain"
)

// windowEnd is what is read at one end of the aggregate window: the bytes
// moved so far and the components' resource use, at about one instant.
type windowEnd struct {
	at    time.Time
	bytes uint64
	use   map[string]chain.Usage
}

// readWindowEnd reads the components' use and takes the byte count and
// the time halfway through that reading: reading /proc for 50 clients
// takes a while, during which the transfers go on.
func readWindowEnd(total func() uint64, usage func() map[string]chain.Usage) windowEnd {
	b0, t0 := total(), time.Now()
	u := usage()
	b1, t1 := total(), time.Now()
	return windowEnd{at: t0.Add(t1.Sub(t0) / 2), bytes: b0 + (b1-b0)/2, use: u}
}

// measureWindow reads both ends of the aggregate window, window apart (or
// until ctx ends), and the rate in each seriesStep between them. closed
// runs after the window has closed: it reads what is not divided by the
// bytes moved (such as the server's metrics, over HTTP), so its time and
// the transfers' progress meanwhile stay out of the figures per byte.
func measureWindow(ctx context.Context, window time.Duration, total func() uint64, usage func() map[string]chain.Usage, closed func()) (open, shut windowEnd, series []float64) {
	open = readWindowEnd(total, usage)
	series = sampleRates(ctx, window, total)
	shut = readWindowEnd(total, usage)
	closed()
	return open, shut, series
}
