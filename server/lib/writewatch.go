package server

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// writeWatch closes a WebSocket whose proxy has stalled: a write has been
// blocked for the write timeout, and nothing arrived from the WebSocket in
// that time either.
//
// A blocked write alone does not tell a stalled proxy from a slow client.
// A proxy stops reading from the server while its client's data channel
// is above its high-water mark, until it drains to half of that (upstream
// proxies do so from 512 to 256 KiB). Below about 9 KB/s that takes longer
// than 30 s, and closing the WebSocket then cost the client its proxy, and
// what the proxy held for it, every half minute. Such a client still
// acknowledges what it receives, through the same proxy, while a stalled
// proxy delivers nothing.
type writeWatch struct {
	timeout time.Duration
	conn    io.Closer

	// Times are durations since start, on the monotonic clock.
	start    time.Time
	lastRead atomic.Int64

	mu         sync.Mutex
	timer      *time.Timer
	writing    bool
	writeSince time.Duration // when the write in progress began
	stalled    bool
}

func newWriteWatch(conn io.Closer, timeout time.Duration) *writeWatch {
	w := &writeWatch{timeout: timeout, conn: conn, start: time.Now()}
	w.timer = time.AfterFunc(timeout, w.check)
	w.timer.Stop()
	return w
}

// read notes that something arrived from the WebSocket.
func (w *writeWatch) read() { w.lastRead.Store(int64(time.Since(w.start))) }

// begin is called before each write.
func (w *writeWatch) begin() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writing, w.writeSince = true, time.Since(w.start)
	w.timer.Reset(w.timeout)
}

// end is called after each write; it reports whether the watch closed the
// connection under it.
func (w *writeWatch) end() (stalled bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writing = false
	w.timer.Stop()
	return w.stalled
}

func (w *writeWatch) check() {
	w.mu.Lock()
	if !w.writing || w.stalled {
		w.mu.Unlock()
		return
	}
	quiet := time.Since(w.start) - max(w.writeSince, time.Duration(w.lastRead.Load()))
	if quiet < w.timeout {
		w.timer.Reset(w.timeout - quiet)
		w.mu.Unlock()
		return
	}
	w.stalled = true
	w.mu.Unlock()
	w.conn.Close()
}
