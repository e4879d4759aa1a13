package main

import (
	"net"
	"sync/atomic"

	pt "gitlab.torproject.org/tpo/anti-censorship/pluggable-transports/goptlib"
)

// listenSocks is pt.ListenSocks with a fix for pipelined handshakes.
// goptlib reads the SOCKS handshake through a bufio.Reader and, after each
// message, drops the connection if the reader holds more bytes: a client
// that sends its greeting, credentials and request in one write (without
// waiting for each reply) is cut off. Handing goptlib one byte per Read
// until the handshake is over leaves nothing buffered at those checks; the
// bytes are still read from the socket in large chunks and kept here.
func listenSocks(addr string) (*pt.SocksListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return pt.NewSocksListener(handshakeListener{ln}), nil
}

type handshakeListener struct{ net.Listener }

func (l handshakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: c}, nil
}

// handshakeConn trickles bytes to goptlib's handshake reader.
type handshakeConn struct {
	net.Conn
	done atomic.Bool // handshake over: Read passes everything through
	buf  []byte      // read from the socket, not yet handed out
	mem  [1024]byte  // backing store for buf: a whole handshake fits
}

// handshakeDone ends the byte-at-a-time reads; call it when AcceptSocks
// has returned the conn. Bytes that came after the request (tor's first
// data) are still delivered, in order.
func handshakeDone(sc *pt.SocksConn) {
	if hc, ok := sc.Conn.(*handshakeConn); ok {
		hc.done.Store(true)
	}
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
