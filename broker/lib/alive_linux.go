package broker

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpEstablished is TCP_ESTABLISHED of linux/tcp_states.h.
const tcpEstablished = unix.BPF_TCP_ESTABLISHED

// connAlive reports whether the peer of a parked connection may still be
// there: a non-blocking MSG_PEEK read sees EOF or an error once it has
// closed or reset the connection. Nobody reads a parked connection, so
// this is the only way to notice a proxy that left before being matched.
// Bytes sent before the FIN hide the EOF from the peek (a TLS peer sends
// a close_notify alert as it closes), so the TCP state is checked too: it
// leaves ESTABLISHED once the peer's FIN or reset has arrived.
func connAlive(c net.Conn) bool {
	for {
		switch u := c.(type) {
		case *tls.Conn:
			c = u.NetConn()
			continue
		case interface{ Unwrap() net.Conn }:
			c = u.Unwrap()
			continue
		}
		break
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil && n == 0:
			alive = false // orderly shutdown by the peer
		case err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR):
			alive = false
		default:
			info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			alive = err != nil || info.State == tcpEstablished
		}
		return true // never wait for readability
	})
	return alive && err == nil
}
