package rawsock

import (
	"errors"
	"net"
)

// Listener wraps every connection ln accepts with Wrap.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// OpError reports err from op on a socket as package net does, so that
// callers' checks (net.Error's Timeout, errors.Is with net.ErrClosed or
// os.ErrDeadlineExceeded) see what they would have seen. A RawConn's own
// errors are already *net.OpError, with op "raw-read" or "raw-write"; their
// cause is kept, not wrapped twice. remote may be nil.
func OpError(op string, local, remote net.Addr, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: local.Network(), Source: local, Addr: remote, Err: err}
}
