package turbotunnel

import (
	"sync"
	"time"
)

// deadline is a settable point in time that a blocked read can select on.
// The zero value has no deadline.
type deadline struct {
	mu    sync.Mutex // guards the following fields
	timer *time.Timer
	ch    chan struct{} // closed when the deadline passes; nil means never
}

// set arms the deadline at t; a zero t disarms it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if t.IsZero() {
		d.ch = nil
		return
	}
	ch := make(chan struct{})
	d.ch = ch
	if dur := time.Until(t); dur > 0 {
		d.timer = time.AfterFunc(dur, func() { close(ch) })
	} else {
		close(ch)
	}
}

// wait returns a channel closed when the deadline passes (nil if unset,
// which blocks forever in a select).
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}
