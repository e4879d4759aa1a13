//go:build !js

package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"
)

func TestNextPoll(t *testing.T) {
	p := &Proxy{cfg: Config{PollInterval: 5 * time.Second}}
	for _, tc := range []struct {
		advice int64
		want   time.Duration
	}{
		{0, 5 * time.Second},
		{-7, 5 * time.Second},
		{2, 5 * time.Second},      // seconds, below the interval
		{20, 20 * time.Second},    // 2.13.0/2.13.1: seconds
		{60, time.Minute},         // 2.13 rejection, seconds
		{20000, 20 * time.Second}, // after 2.13.1: milliseconds
		{3600000, time.Hour},      // rejection, milliseconds
		{1 << 62, time.Hour},      // clamped
		{999, 999 * time.Second},  // still seconds
		{1000, 5 * time.Second},   // 1000 ms
		{int64(90 * time.Minute / time.Millisecond), time.Hour},
	} {
		if got := p.nextPoll(tc.advice); got != tc.want {
			t.Errorf("nextPoll(%d) = %v, want %v", tc.advice, got, tc.want)
		}
	}
}

func TestTokens(t *testing.T) {
	tk := newTokens(2)
	ctx := context.Background()
	tk.acquire(ctx)
	tk.acquire(ctx)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := tk.acquire(short); err == nil {
		t.Fatal("third token acquired at capacity 2")
	}
	got := make(chan struct{})
	go func() { tk.acquire(ctx); close(got) }()
	tk.release()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("release did not wake a waiter")
	}
	if tk.count() != 2 {
		t.Fatalf("count = %d", tk.count())
	}
	unlimited := newTokens(0)
	for range 100 {
		unlimited.acquire(ctx)
	}
	if unlimited.count() != 100 {
		t.Fatalf("unlimited count = %d", unlimited.count())
	}
}

// The pipe must deliver every byte in order, coalesce small writes into
// reads of up to the reader's buffer, and never hold more than its limit
// plus one write.
func TestPipeCoalesces(t *testing.T) {
	p := newPipe(4096)
	data := make([]byte, 1<<20)
	rand.Read(data)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for off := 0; off < len(data); off += 100 {
			if !p.write(data[off:min(off+100, len(data))]) {
				t.Error("write failed")
				return
			}
		}
		p.closeWrite()
	}()
	var got bytes.Buffer
	buf := make([]byte, 65535)
	reads, biggest := 0, 0
	for {
		// Let the producer get ahead so reads coalesce.
		if reads%64 == 0 {
			time.Sleep(time.Millisecond)
		}
		n := p.read(buf)
		if n == 0 {
			break
		}
		reads++
		biggest = max(biggest, n)
		got.Write(buf[:n])
	}
	wg.Wait()
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("data corrupted")
	}
	if biggest <= 100 || biggest > 4096+100 {
		t.Errorf("largest read %d bytes: want coalesced (>100) and bounded (<=limit+write)", biggest)
	}
	t.Logf("%d writes coalesced into %d reads, largest %d", len(data)/100, reads, biggest)
}

func TestPipeAbort(t *testing.T) {
	p := newPipe(10)
	p.write(make([]byte, 10))
	done := make(chan bool)
	go func() { done <- p.write([]byte{1}) }() // blocks: full
	time.Sleep(10 * time.Millisecond)
	p.abort()
	if <-done {
		t.Error("write after abort succeeded")
	}
	if n := p.read(make([]byte, 10)); n != 0 {
		t.Errorf("read after abort returned %d bytes", n)
	}
}
