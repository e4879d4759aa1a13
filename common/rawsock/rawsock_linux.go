package rawsock

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Wrap returns a TCP connection whose Read and Write make their system
// calls directly; other connections, and TCP connections whose socket
// cannot be reached, are returned as they are.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return newConn(tc, raw)
}

// conn keeps every other method of the TCP connection: deadlines,
// CloseWrite, addresses, and ReadFrom/WriteTo (splice), which io.Copy
// prefers and which already avoid the per-read cost.
type conn struct {
	*net.TCPConn
	raw  syscall.RawConn
	r, w op
}

// op is one direction's system call. The callback the RawConn runs is a
// method value bound once, and its buffer and results live here, so that a
// read or write allocates nothing. mu keeps concurrent calls in one
// direction from sharing the fields (the RawConn serializes them anyway).
type op struct {
	mu    sync.Mutex
	buf   []byte
	n     int
	errno syscall.Errno
	call  func(fd uintptr) bool
}

func newConn(tc *net.TCPConn, raw syscall.RawConn) *conn {
	c := &conn{TCPConn: tc, raw: raw}
	c.r.call = c.r.read
	c.w.call = c.w.write
	return c
}

// Syscall6 makes a system call that cannot block (on a non-blocking
// socket, or with MSG_DONTWAIT) directly, for a syscall.RawConn callback:
// it retries when interrupted and reports not done when the socket is not
// ready, so that the RawConn waits for it in the poller.
func Syscall6(trap, a1, a2, a3, a4, a5, a6 uintptr) (r uintptr, errno syscall.Errno, done bool) {
	for {
		r, _, e := unix.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, 0, false
		}
		return r, e, true
	}
}

// read makes one read(2).
func (o *op) read(fd uintptr) bool {
	r, errno, done := Syscall6(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&o.buf[0])), uintptr(len(o.buf)), 0, 0, 0)
	o.n, o.errno = int(r), errno
	return done
}

// write makes write(2) calls until buf is written.
func (o *op) write(fd uintptr) bool {
	for o.n < len(o.buf) {
		rest := o.buf[o.n:]
		r, errno, done := Syscall6(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), 0, 0, 0)
		if !done {
			return false
		}
		if errno != 0 {
			o.errno = errno
			return true
		}
		o.n += int(r)
	}
	return true
}

// do runs the op on p through run (the RawConn's Read or Write).
func (o *op) do(p []byte, run func(func(uintptr) bool) error) (int, syscall.Errno, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf, o.n, o.errno = p, 0, 0
	err := run(o.call)
	o.buf = nil
	return o.n, o.errno, err
}

func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, errno, err := c.r.do(p, c.raw.Read)
	switch {
	case err != nil || errno != 0:
		return 0, c.opError("read", errno, err)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, errno, err := c.w.do(p, c.raw.Write)
	if err != nil || errno != 0 {
		return n, c.opError("write", errno, err)
	}
	return n, nil
}

// opError reports a failed read or write as package net does: the
// RawConn's error (a deadline, a close) if it had one, else the system
// call's.
func (c *conn) opError(op string, errno syscall.Errno, err error) error {
	if err == nil {
		err = os.NewSyscallError(op, errno)
	}
	return OpError(op, c.LocalAddr(), c.RemoteAddr(), err)
}
