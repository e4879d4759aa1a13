package testenv

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
)

// AcceptEach calls accept until it fails and runs handle on every
// connection (or stream, or session) it returns, each in its own goroutine,
// closing it when handle returns. AcceptEach returns once accept has failed
// and every handler has returned, so a caller that runs it in a goroutine
// owns all of them by waiting for that one.
func AcceptEach[C io.Closer](accept func() (C, error), handle func(C)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			handle(c)
		})
	}
}

// ServeTCP listens on a free port of 127.0.0.1 and runs handle on every
// connection, as AcceptEach does. The test's cleanup closes the listener and
// waits for the accept loop and every handler, so handlers must return once
// their peer is gone.
func ServeTCP(t testing.TB, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		AcceptEach(ln.Accept, handle)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln
}

// CuttableDialer wraps a dial function and remembers the connection it made
// last, so that a test can cut it in the middle of a transfer (to make a
// client dial again) and count the dials.
type CuttableDialer struct {
	dial func(ctx context.Context) (net.Conn, error)

	mu    sync.Mutex
	cur   net.Conn
	dials int
}

// NewCuttableDialer returns a CuttableDialer that dials with dial.
func NewCuttableDialer(dial func(ctx context.Context) (net.Conn, error)) *CuttableDialer {
	return &CuttableDialer{dial: dial}
}

// Dial dials and remembers the connection.
func (d *CuttableDialer) Dial(ctx context.Context) (net.Conn, error) {
	c, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.cur, d.dials = c, d.dials+1
	d.mu.Unlock()
	return c, nil
}

// Cut closes the connection dialled last, if any.
func (d *CuttableDialer) Cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur != nil {
		d.cur.Close()
	}
}

// Dials returns how many dials succeeded.
func (d *CuttableDialer) Dials() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}
