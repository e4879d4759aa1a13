package rawsock

import (
	"errors"
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

// read makes one read(2); it reports not done when the socket has
// nothing, so that the RawConn waits for it.
func (o *op) read(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&o.buf[0])), uintptr(len(o.buf)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		o.n, o.errno = int(r), e
		return true
	}
}

// write makes write(2) calls until buf is written, reporting not done
// whenever the socket is full.
func (o *op) write(fd uintptr) bool {
	for o.n < len(o.buf) {
		rest := o.buf[o.n:]
		r, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			o.n += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			o.errno = e
			return true
		}
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
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
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
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// opError reports err as the net package does, so that callers' checks
// (net.Error's Timeout, errors.Is with net.ErrClosed or
// os.ErrDeadlineExceeded) see what they would have seen.
func (c *conn) opError(op string, err error) error {
	// The RawConn's own errors are already *net.OpError, with op
	// "raw-read" or "raw-write"; keep their cause.
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
