// Package closegroup counts what a component's Close must wait for (its
// goroutines and the calls under way) and turns new work away once Close
// has begun.
//
// A sync.WaitGroup alone does not do this: an Add from zero that comes
// while Wait runs is a race, and what it counts may outlive Wait. A Group
// orders every Enter and Go against Stop, so after Stop no new member
// joins, and Wait waits for exactly those that did.
package closegroup

import "sync"

// Group is the set of members a Close waits for. The zero value is ready
// to use; a Group must not be copied after first use.
type Group struct {
	mu      sync.Mutex // orders Enter and Go against Stop
	stopped bool
	wg      sync.WaitGroup
}

// Enter counts the caller as a member unless Stop has been called. Each
// true must be matched by one Leave.
func (g *Group) Enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	g.wg.Add(1)
	return true
}

// Leave ends a membership taken with Enter or Join.
func (g *Group) Leave() { g.wg.Done() }

// Join counts one more member on behalf of a caller that is a member
// itself (it entered and has not left), even after Stop: Wait cannot have
// returned while the caller is counted, so the member is waited for. It is
// for goroutines a member starts that must run to clean up after it. Match
// it with one Leave.
func (g *Group) Join() { g.wg.Add(1) }

// Go runs f in a new goroutine counted as a member, unless Stop has been
// called. It reports whether f runs.
func (g *Group) Go(f func()) bool {
	if !g.Enter() {
		return false
	}
	go func() {
		defer g.Leave()
		f()
	}()
	return true
}

// Stop turns away every later Enter and Go. It is idempotent.
func (g *Group) Stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
}

// Wait waits for every member. Call Stop first, and end what the members
// wait on, or new members may keep it waiting.
func (g *Group) Wait() { g.wg.Wait() }
