package broker

import (
	"net"
	"sync"
)

// limitListener caps the number of open accepted connections: Accept
// waits while the cap is reached. Unlike netutil.LimitListener its
// connections expose the underlying connection (Unwrap), which connAlive
// needs to probe parked polls.
type limitListener struct {
	net.Listener
	sem chan struct{}
	// done is closed by Close: an Accept waiting for a slot then fails,
	// as http.Server.Shutdown waits for its accept loop to end before it
	// closes the idle connections that hold the slots.
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Unwrap returns the accepted connection.
func (c *limitConn) Unwrap() net.Conn { return c.Conn }
