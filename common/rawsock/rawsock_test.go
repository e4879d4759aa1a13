package rawsock

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection, each wrapped.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = Listener(ln)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client, server = Wrap(c), <-accepted
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestWrapKinds(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Error("Wrap changed a connection that is not TCP")
	}
}

// More than the socket buffers hold, both ways at once, so that reads and
// writes find the socket not ready and wait in the poller.
func TestBulkBothWays(t *testing.T) {
	client, server := pair(t)
	const size = 32 << 20
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	// The server echoes in odd-sized pieces.
	go func() {
		buf := make([]byte, 7777)
		io.CopyBuffer(struct{ io.Writer }{server}, struct{ io.Reader }{server}, buf)
		server.(interface{ CloseWrite() error }).CloseWrite()
	}()
	go func() {
		// One write of everything: it must come back whole.
		if n, err := client.Write(data); n != size || err != nil {
			t.Errorf("write: %d, %v", n, err)
		}
		client.(interface{ CloseWrite() error }).CloseWrite()
	}()
	h := sha256.New()
	n, err := io.CopyBuffer(h, struct{ io.Reader }{client}, make([]byte, 5000))
	if err != nil || n != size {
		t.Fatalf("read back %d bytes, %v", n, err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("bytes read back differ from those written")
	}
}

func TestReadDeadline(t *testing.T) {
	client, server := pair(t)
	client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := client.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the deadline fired after %v", d)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Errorf("error %#v, want a *net.OpError for read", err)
	}
	// The connection still works once the deadline is lifted.
	client.SetReadDeadline(time.Time{})
	if _, err := server.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := client.Read(make([]byte, 10)); n != 1 || err != nil {
		t.Errorf("read after the deadline was lifted: %d, %v", n, err)
	}
}

func TestWriteDeadline(t *testing.T) {
	client, _ := pair(t) // the server never reads
	// Allocated before the deadline is set: zeroing 64 MB (and, under
	// -race, its shadow memory) has taken over a second on a loaded
	// machine, and the deadline then passed before Write began.
	buf := make([]byte, 64<<20)
	// A margin for a loaded machine: the deadline must not pass before
	// the first write.
	client.SetWriteDeadline(time.Now().Add(time.Second))
	n, err := client.Write(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a peer that does not read: %d, %v; want a timeout", n, err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Errorf("wrote %d bytes before the deadline, want some but not all", n)
	}
}

func TestEOFAndClose(t *testing.T) {
	client, server := pair(t)
	if _, err := server.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "bye" {
		t.Fatalf("read %q, %v; want \"bye\" then EOF", got, err)
	}
	client.Close()
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v, want net.ErrClosed", err)
	}
	if _, err := client.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v, want net.ErrClosed", err)
	}
	if n, err := client.Read(nil); n != 0 || err != nil {
		t.Errorf("empty read: %d, %v", n, err)
	}
}

// A close from another goroutine ends a read that is waiting.
func TestCloseWakesReader(t *testing.T) {
	client, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := client.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	client.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("waiting read ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("close did not end a waiting read")
	}
}
