package proxy

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Relay reachability (wire-protocol §4.2, upstream 2.12+): a proxy that
// cannot reach its default relay would take clients only to fail them, so
// it polls only while the last check succeeded.
const (
	relayRecheckOK     = 24 * time.Hour
	relayRetryFirst    = 5 * time.Minute
	relayRetryMax      = 24 * time.Hour
	relayCheckDeadline = 10 * time.Second
)

// relayGate is open while the default relay is known to be reachable.
type relayGate struct {
	mu   sync.Mutex // guards open and wait
	open bool
	wait chan struct{} // closed when the gate opens
}

func newRelayGate() *relayGate { return &relayGate{wait: make(chan struct{})} }

func (g *relayGate) set(ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case ok && !g.open:
		g.open = true
		close(g.wait)
	case !ok && g.open:
		g.open = false
		g.wait = make(chan struct{})
	}
}

// passed waits until the gate is open; it reports false if ctx ended.
func (g *relayGate) passed(ctx context.Context) bool {
	g.mu.Lock()
	if g.open {
		g.mu.Unlock()
		return true
	}
	w := g.wait
	g.mu.Unlock()
	select {
	case <-w:
		return true
	case <-ctx.Done():
		return false
	}
}

// checkRelay opens and closes a WebSocket to the default relay, without a
// client_ip (the server treats an early EOF as a reachability check).
func (p *Proxy) checkRelay(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, relayCheckDeadline)
	defer cancel()
	ws, err := p.relay.dial(ctx, p.cfg.RelayURL)
	if err != nil {
		return fmt.Errorf("relay check: %w", err)
	}
	// In a browser close returns at once: the check is done once the
	// WebSocket opened, and waiting for the relay's answer would hold
	// back polling, from a relay that hangs, until the browser gives up.
	ws.close()
	return nil
}

// watchRelay checks the relay now and then on the upstream schedule, and
// keeps the gate in step. It returns when ctx is done.
func (p *Proxy) watchRelay(ctx context.Context) {
	retry := relayRetryFirst
	for {
		next := relayRecheckOK
		if err := p.checkRelay(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.gate.set(false)
			p.log.Warn("default relay unreachable; not polling until it is", "err", err, "retry_in", retry)
			next = retry
			retry = min(retry*2, relayRetryMax)
		} else {
			p.gate.set(true)
			retry = relayRetryFirst
		}
		if !sleep(ctx, next) {
			return
		}
	}
}
