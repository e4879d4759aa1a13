// Package procs sizes GOMAXPROCS to the CPU a process actually uses.
//
// Snowflake's client and proxy move each packet through a chain of
// goroutines (UDP socket, DTLS, SCTP, data channel, relay). With more than
// one P, every hand-off may wake another OS thread, and idle threads spin
// and sleep looking for work: on a 2-core machine about a third of the
// proxy's and the client's CPU went to context switches and futex and
// nanosleep calls. With one P the same hand-offs stay on one thread: the
// proxy relayed a bulk transfer with ~25% less CPU and the client with
// ~12% less, at equal or higher speed. The bridge server hands each
// message between goroutines too (WebSocket, KCP, smux, tor): with one P
// its share of the echo round trip fell by a fifth. One P is also a
// ceiling of one core, so a [Scaler] doubles the Ps while the process keeps
// them busy and takes them away one by one when it no longer does.
package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"time"
)

const (
	// Interval is how often the CPU use is sampled.
	Interval = 2 * time.Second
	// grow adds a P when the process used more than this fraction of its
	// current Ps over an interval.
	grow = 0.75
	// shrinkAfter intervals below shrink × (Ps − 1) remove a P.
	shrink      = 0.5
	shrinkAfter = 3
)

// Scaler adjusts GOMAXPROCS between 1 and the value the Go runtime chose
// at start (which follows the CPU count and cgroup limits).
type Scaler struct {
	max    int
	logger *slog.Logger
	cpu    func() time.Duration // process CPU time so far
	set    func(int) int        // runtime.GOMAXPROCS
}

// New returns a Scaler for this process, or nil when there is nothing to
// scale: a single CPU, or a GOMAXPROCS the operator set in the environment
// (which is respected). logger may be nil.
func New(logger *slog.Logger) *Scaler {
	if logger == nil {
		logger = discard()
	}
	if os.Getenv("GOMAXPROCS") != "" {
		return nil
	}
	cpu, ok := processCPU()
	if !ok {
		return nil
	}
	max := runtime.GOMAXPROCS(0)
	if max <= 1 {
		return nil
	}
	return &Scaler{max: max, logger: logger, cpu: cpu, set: runtime.GOMAXPROCS}
}

// Run sets GOMAXPROCS to 1, then adjusts it every Interval until ctx ends,
// when it restores the starting value. A nil Scaler returns at once.
func (s *Scaler) Run(ctx context.Context) {
	if s == nil {
		return
	}
	s.set(1)
	defer s.set(s.max)
	t := time.NewTicker(Interval)
	defer t.Stop()
	var st state
	st.procs = 1
	lastCPU, lastWall := s.cpu(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := s.cpu()
			used := float64(cpu-lastCPU) / float64(now.Sub(lastWall))
			lastCPU, lastWall = cpu, now
			if n := st.next(used, s.max); n != st.procs {
				s.logger.Debug("GOMAXPROCS changed", "from", st.procs, "to", n, "cpu_used", used)
				st.procs = n
				s.set(n)
			}
		}
	}
}

// state is the controller's memory between samples.
type state struct {
	procs int // current GOMAXPROCS
	low   int // consecutive intervals below the shrink threshold
}

// next returns the GOMAXPROCS for the next interval given the cores used
// during the last one.
func (st *state) next(used float64, max int) int {
	switch {
	case used > grow*float64(st.procs) && st.procs < max:
		// Doubling reaches a bridge's many cores within seconds of a
		// surge; giving them back is gradual.
		st.low = 0
		return min(max, 2*st.procs)
	case st.procs > 1 && used < shrink*float64(st.procs-1):
		st.low++
		if st.low >= shrinkAfter {
			st.low = 0
			return st.procs - 1
		}
	default:
		st.low = 0
	}
	return st.procs
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
