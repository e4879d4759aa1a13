package server

import (
	"testing"
	"time"
)

// closeRecorder records when it was closed.
type closeRecorder chan time.Time

func (c closeRecorder) Close() error {
	select {
	case c <- time.Now():
	default:
	}
	return nil
}

// TestWriteWatch runs a watch with a 1 s timeout. A stall of the test of up
// to a second is tolerated.
func TestWriteWatch(t *testing.T) {
	const timeout = time.Second
	for _, tc := range []struct {
		name string
		run  func(w *writeWatch) // with a write begun; returns when it would end
		// wantClosed is whether the watch must close the conn; if so, it
		// must not be before closeAfter from the start of the write.
		wantClosed bool
		closeAfter time.Duration
	}{
		{"write blocked, peer silent", func(*writeWatch) { time.Sleep(3 * timeout) }, true, timeout},
		{"write completes", func(*writeWatch) { time.Sleep(timeout / 10) }, false, 0},
		// A proxy waiting for its slow client: nothing is read from the
		// server for 2.5 s, but the client's acknowledgments arrive.
		{"write blocked, peer sends", func(w *writeWatch) {
			for range 50 {
				w.read()
				time.Sleep(50 * time.Millisecond)
			}
		}, false, 0},
		{"peer stops sending", func(w *writeWatch) {
			for range 20 {
				w.read()
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(3 * timeout)
		}, true, 2*timeout - timeout/20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			closed := make(closeRecorder, 1)
			w := newWriteWatch(closed, timeout)
			w.read() // before the write: the write's start counts
			start := time.Now()
			w.begin()
			tc.run(w)
			stalled := w.end()
			if stalled != tc.wantClosed {
				t.Fatalf("end reports stalled %v, want %v", stalled, tc.wantClosed)
			}
			select {
			case at := <-closed:
				if !tc.wantClosed {
					t.Fatalf("closed after %v", at.Sub(start))
				}
				if d := at.Sub(start); d < tc.closeAfter {
					t.Errorf("closed after %v, want at least %v", d, tc.closeAfter)
				}
			case <-time.After(2 * timeout):
				if tc.wantClosed {
					t.Fatal("never closed")
				}
			}
		})
	}
}
