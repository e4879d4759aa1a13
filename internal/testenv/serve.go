package testenv

import (
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
