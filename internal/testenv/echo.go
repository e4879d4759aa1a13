package testenv

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"testing"
)

// EchoExchange writes n random bytes to rw in 1400-byte writes, as a
// Snowflake client's KCP sends them, while it reads n bytes back, and
// fails t unless what came back has the SHA-256 digest of what was sent.
// The peer must echo. A read that blocks for ever blocks the test: callers
// that can stall close rw at a deadline.
func EchoExchange(t testing.TB, rw io.ReadWriter, n int) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		for off := 0; off < len(data); off += 1400 {
			if _, err := rw.Write(data[off:min(off+1400, len(data))]); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	h := sha256.New()
	buf := make([]byte, 64*1024)
	got := 0
	for got < n {
		k, err := rw.Read(buf)
		if err != nil {
			t.Fatalf("testenv: echo: read after %d of %d bytes: %v", got, n, err)
		}
		h.Write(buf[:k])
		got += k
	}
	if err := <-errc; err != nil {
		t.Fatalf("testenv: echo: write: %v", err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) || got != n {
		t.Fatalf("testenv: echo mismatch: %d bytes, digest differs", got)
	}
}
