package turbotunnel

import (
	"sync"
	"time"
)

// deadline is a settable point in time that a blocked read can select on.
// The zero value has no deadline.
//
// A read selects on the channel wait returned when it started, so a
// deadline set, moved or cleared later must act on that same channel: it
// stays the same until it has been closed, and only a deadline set after
// that gets a new one.
type deadline struct {
	mu      sync.Mutex // guards the following fields
	timer   *time.Timer
	ch      chan struct{} // closed when the deadline passes; made on first use
	expired bool          // ch is closed
}

// chLocked returns the current channel, making it if needed.
func (d *deadline) chLocked() chan struct{} {
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

// expireLocked closes the current channel.
func (d *deadline) expireLocked() {
	if !d.expired {
		close(d.chLocked())
		d.expired = true
	}
}

// set arms the deadline at t; a zero t disarms it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		// A callback already on its way finds d.timer changed and
		// does nothing.
		d.timer.Stop()
		d.timer = nil
	}
	if d.expired {
		// Reads waiting on the closed channel have returned.
		d.ch = nil
		d.expired = false
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		d.expireLocked()
		return
	}
	var timer *time.Timer
	timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.timer == timer {
			d.timer = nil
			d.expireLocked()
		}
	})
	d.timer = timer
}

// wait returns a channel closed when the deadline passes, including one
// set after wait returned.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.chLocked()
}
