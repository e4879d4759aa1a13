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
}

func newLimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
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
