package main

import (
	"errors"
	"net"
	"sync/atomic"

	pt "gitlab.torproject.org/tpo/anti-censorship/pluggable-transports/goptlib"
)

// socksHandshake runs goptlib's SOCKS5 server handshake on one accepted
// connection. Two things differ from pt.ListenSocks' AcceptSocks:
//
//   - Handshakes run in each connection's own goroutine. AcceptSocks does
//     them one after another, so a local client that connects and says
//     nothing would hold up all others for goptlib's 5 s timeout.
//   - Pipelined handshakes work. goptlib reads through a bufio.Reader and,
//     after each message, drops the connection if the reader holds more
//     bytes, so a client that sends greeting, credentials and request in
//     one write is cut off. Handing goptlib one byte per Read until the
//     handshake is over leaves nothing buffered at those checks; the bytes
//     are still read from the socket in large chunks and kept here.
//
// On failure goptlib has closed conn.
func socksHandshake(conn net.Conn) (*pt.SocksConn, error) {
	hc := &handshakeConn{Conn: conn}
	sc, err := pt.NewSocksListener(&oneConnListener{conn: hc}).AcceptSocks()
	if err != nil {
		conn.Close()
		return nil, errors.New("SOCKS handshake failed")
	}
	hc.done.Store(true)
	return sc, nil
}

// oneConnListener hands one connection to goptlib's AcceptSocks. If the
// handshake fails, AcceptSocks asks for the next connection, and the error
// it gets ends it.
type oneConnListener struct {
	conn net.Conn
	used bool // only AcceptSocks' goroutine touches it
}

var errNoMoreConns = errors.New("one connection per handshake")

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.used {
		return nil, errNoMoreConns
	}
	l.used = true
	return l.conn, nil
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// handshakeConn trickles bytes to goptlib's handshake reader.
type handshakeConn struct {
	net.Conn
	// done is set when the handshake is over: Read then passes everything
	// through, after the bytes that followed the request (tor's first
	// data), in order.
	done atomic.Bool
	buf  []byte     // read from the socket, not yet handed out
	mem  [1024]byte // backing store for buf: a whole handshake fits
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.buf) == 0 {
		if c.done.Load() {
			return c.Conn.Read(p)
		}
		n, err := c.Conn.Read(c.mem[:])
		c.buf = c.mem[:n]
		if n == 0 {
			return 0, err
		}
	}
	limit := len(p)
	if !c.done.Load() {
		limit = 1
	}
	n := copy(p[:limit], c.buf)
	c.buf = c.buf[n:]
	return n, nil
}
