package main

import (
	"fmt"
	"testing"
	"time"
)

// TestUploadDoesNotStall uploads through the real server binary over one
// session, as BenchmarkServerThroughput does, and watches the ORPort: the
// bytes must keep coming. A client's KCP timer runs once a second
// (clientUpdateInterval), so a lost segment that waits for it stalls the
// upload for a second; with kcp-go v5.6.24 and nothing to flush the client
// when acknowledgments show the gap, one session uploaded 9.5 MB/s in
// bursts between such stalls (doc/protocol.md).
func TestUploadDoesNotStall(t *testing.T) {
	const (
		total = 48 << 20
		// The timer's stalls last 0.8–1 s, and without the flush on a gap
		// this upload had nine of them. A loaded CI machine may pause the
		// processes for a while, so one long pause is let pass.
		maxGap    = 600 * time.Millisecond
		maxPauses = 1
	)
	bs := startBenchServer(t, 0)
	defer bs.p.Stop()
	_, streams := openSessions(t, bs, 1)
	st := streams[0]
	start := bs.sink.bytes.Load()
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 16<<10)
		for left := total; left > 0; left -= len(chunk) {
			if _, err := st.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var (
		last     = start
		lastMove = time.Now()
		gaps     []string
		deadline = time.Now().Add(2 * time.Minute)
	)
	for bs.sink.bytes.Load()-start < total {
		if time.Now().After(deadline) {
			t.Fatalf("the ORPort got %d of %d bytes in 2 minutes", bs.sink.bytes.Load()-start, total)
		}
		time.Sleep(5 * time.Millisecond)
		now := bs.sink.bytes.Load()
		if now == last {
			continue
		}
		if d := time.Since(lastMove); d > maxGap {
			gaps = append(gaps, fmt.Sprintf("%v at %d KiB", d.Round(time.Millisecond), (last-start)>>10))
		}
		last, lastMove = now, time.Now()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(gaps) > maxPauses {
		t.Errorf("the upload of %d bytes stopped %d times for longer than %v, want at most %d: %v", total, len(gaps), maxGap, maxPauses, gaps)
	}
}
