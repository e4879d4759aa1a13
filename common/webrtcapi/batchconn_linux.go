package webrtcapi

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/pion/transport/v5"
	"golang.org/x/sys/unix"

	"github.com/snowflake-go/snowflake/common/rawsock"
)

const (
	// batchSize is how many datagrams one receive system call may take.
	// A data channel at full speed delivers about nine datagrams per
	// wake-up of the reader, so this takes most bursts whole.
	batchSize = 16
	// slotSize bounds a datagram that arrives behind the first of a batch
	// (the first is read straight into the caller's buffer). WebRTC peers
	// keep datagrams near 1,200 bytes (DTLS fragments, SCTP packets); a
	// longer one in a later slot is dropped, as a datagram longer than a
	// read buffer is cut.
	slotSize = 2048
)

// batchConn is an operating-system UDP socket whose reads take every
// waiting datagram with one recvmmsg call, then hand them out one per
// read, and whose writes are sent in batches by a sender. A peer moving
// tens of MB/s otherwise makes one system call per datagram, and on
// virtual machines, where each call is costly, those calls were the
// largest single item in the client's and the proxy's profiles.
//
// It implements pion's AddrPortReaderWriter, so ICE reads through it
// without allocating. Every read method drains the same batch, so
// datagrams are never reordered between them.
type batchConn struct {
	*net.UDPConn
	raw syscall.RawConn

	mu    sync.Mutex // serializes reads; guards the fields below
	hdrs  [batchSize]unix.Mmsghdr
	iovs  [batchSize]unix.Iovec
	names [batchSize]unix.RawSockaddrInet6 // large enough for either family
	slots []byte                           // (batchSize-1) × slotSize, allocated at the first batch
	next  int                              // datagrams hdrs[next:count] wait in slots
	count int
	zone  zoneName
	recv  func(fd uintptr) bool // c.recvmmsg, bound once: a closure per read would allocate
	got   int                   // recvmmsg's results
	errno syscall.Errno

	out  *sender
	errq *errQueue // the reader's, when ICMP errors are reported
}

// newBatchConn wraps c; it returns c itself if its socket or address
// family cannot be had. A non-nil unreachable gets the socket's ICMP
// errors (see ReportUnreachable); if the kernel refuses IP_RECVERR, the
// socket works as one without.
func newBatchConn(c *net.UDPConn, unreachable func(netip.AddrPort, string)) transport.UDPConn {
	raw, err := c.SyscallConn()
	if err != nil {
		return c
	}
	family, err := socketFamily(raw)
	if err != nil {
		return c
	}
	bc := &batchConn{UDPConn: c, raw: raw, out: newSender(raw, family, c.LocalAddr())}
	bc.recv = bc.recvmmsg
	if unreachable != nil && setRecvErr(raw, family) == nil {
		bc.errq = newErrQueue(raw, unreachable)
		bc.out.errq = newErrQueue(raw, unreachable)
	}
	return bc
}

// ReadFromAddrPort implements pion's AddrPortReaderWriter.
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if n, addr, _, ok := c.popLocked(b); ok {
			return n, addr, nil
		}
		if len(b) == 0 {
			return c.UDPConn.ReadFromUDPAddrPort(b)
		}
		n, addr, ok, err := c.readBatch(b)
		if err != nil || ok {
			return n, addr, err
		}
	}
}

// popLocked copies the next waiting datagram into b; cut reports that it
// was longer than b. It reports false when none is left.
func (c *batchConn) popLocked(b []byte) (n int, addr netip.AddrPort, cut, ok bool) {
	for c.next < c.count {
		i := c.next
		c.next++
		h := &c.hdrs[i]
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			continue // longer than a slot: dropped
		}
		addr, ok := c.addrPort(&c.names[i], h.Hdr.Namelen)
		if !ok {
			continue
		}
		off := (i - 1) * slotSize
		n := copy(b, c.slots[off:off+int(h.Len)])
		return n, addr, n < int(h.Len), true
	}
	return 0, netip.AddrPort{}, false, false
}

// readBatch receives up to batchSize datagrams, the first into b and the
// rest into the slots, and returns the first. ok is false if the first
// had an address that is not an IP one; the caller then reads on.
func (c *batchConn) readBatch(b []byte) (n int, addr netip.AddrPort, ok bool, err error) {
	if c.slots == nil {
		c.setUpBatch()
	}
	// Only the first buffer changes between calls; the kernel rewrites
	// each address length.
	c.iovs[0].Base = &b[0]
	c.iovs[0].SetLen(len(b))
	for i := range c.hdrs {
		c.hdrs[i].Hdr.Namelen = uint32(unsafe.Sizeof(c.names[i]))
	}
	rerr := c.raw.Read(c.recv)
	if c.errq != nil && (rerr != nil || c.errno != 0) {
		rerr = c.readAfterError(rerr)
	}
	got, errno := c.got, c.errno
	if rerr != nil {
		// Deadline or close: report it as a plain read would.
		return 0, netip.AddrPort{}, false, rawsock.OpError("read", c.LocalAddr(), nil, rerr)
	}
	if errno != 0 {
		return 0, netip.AddrPort{}, false, rawsock.OpError("read", c.LocalAddr(), nil, os.NewSyscallError("recvmmsg", errno))
	}
	c.next, c.count = 1, got
	// The first datagram is in b; one longer than b is cut, as by recvfrom.
	addr, ok = c.addrPort(&c.names[0], c.hdrs[0].Hdr.Namelen)
	return min(int(c.hdrs[0].Len), len(b)), addr, ok, nil
}

// readAfterError handles a failed read on a socket with IP_RECVERR set,
// and reads again. An ICMP error makes the next receive fail once (the
// socket's pending error) however many datagrams wait; that error is
// about some earlier send, not this read, and passed on it would end
// pion's read loop for the candidate. So the queue is drained (the
// reports made) and the read retried. The same errno again with nothing
// queued is a real failure, and is returned as before.
//
// rerr, an error of the poller rather than of recvmmsg, is either close,
// a deadline, or "not pollable": Go's poller reports the latter when an
// event holds EPOLLERR alone (an error queued while the socket is neither
// readable nor writable), until the next event without it. That ends as
// soon as a datagram arrives or the send buffer drains, so the reader
// waits a little and tries again.
func (c *batchConn) readAfterError(rerr error) error {
	retried := false
	for {
		if rerr != nil {
			if errors.Is(rerr, net.ErrClosed) || errors.Is(rerr, os.ErrDeadlineExceeded) {
				return rerr
			}
			c.errq.read()
			time.Sleep(notPollableWait)
		} else if c.errno != 0 {
			if c.errq.read() == 0 && retried {
				return nil
			}
			retried = true
		} else {
			return nil
		}
		rerr = c.raw.Read(c.recv)
	}
}

// notPollableWait is how long a reader waits for the poller to take a
// socket back after an EPOLLERR-only event (see readAfterError).
const notPollableWait = time.Millisecond

// setUpBatch allocates the slots and points the headers at them and at
// the address buffers, once.
func (c *batchConn) setUpBatch() {
	c.slots = make([]byte, (batchSize-1)*slotSize)
	for i := range c.hdrs {
		if i > 0 {
			c.iovs[i].Base = &c.slots[(i-1)*slotSize]
			c.iovs[i].SetLen(slotSize)
		}
		c.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&c.names[i]))
		c.hdrs[i].Hdr.Iov = &c.iovs[i]
		c.hdrs[i].Hdr.SetIovlen(1)
	}
}

// recvmmsg is the raw.Read callback of readBatch.
func (c *batchConn) recvmmsg(fd uintptr) bool {
	var done bool
	c.got, c.errno, done = mmsg(unix.SYS_RECVMMSG, fd, c.hdrs[:])
	return done
}

// mmsg makes the recvmmsg or sendmmsg system call (trap) on hdrs for a
// raw.Read or raw.Write callback. With MSG_DONTWAIT it cannot block, so it
// is made directly (see rawsock.Syscall6): the runtime's system-call entry
// would also wake its monitor thread whenever the process had been idle.
func mmsg(trap, fd uintptr, hdrs []unix.Mmsghdr) (n int, errno syscall.Errno, done bool) {
	r, errno, done := rawsock.Syscall6(trap, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), unix.MSG_DONTWAIT, 0, 0)
	return int(r), errno, done
}

// addrPort converts a kernel socket address the way package net does:
// IPv4-mapped addresses stay mapped, and a scope becomes the zone.
func (c *batchConn) addrPort(sa *unix.RawSockaddrInet6, n uint32) (netip.AddrPort, bool) {
	ap, scope, ok := sockaddrAddrPort(sa, n)
	if scope != 0 {
		ap = netip.AddrPortFrom(ap.Addr().WithZone(c.zone.lookup(scope)), ap.Port())
	}
	return ap, ok
}

// sockaddrAddrPort converts a kernel socket address of n bytes, IPv4 or
// IPv6 (IPv4-mapped addresses stay mapped), and returns an IPv6 address's
// scope apart, for the caller to name or leave out.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6, n uint32) (ap netip.AddrPort, scope uint32, ok bool) {
	switch {
	case sa.Family == unix.AF_INET && n >= unix.SizeofSockaddrInet4:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), networkPort(&sa4.Port)), 0, true
	case sa.Family == unix.AF_INET6 && n >= unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), networkPort(&sa.Port)), sa.Scope_id, true
	}
	return netip.AddrPort{}, 0, false
}

// networkPort reads a port stored in network byte order.
func networkPort(p *uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(p))[:])
}

// setNetworkPort stores a port in network byte order.
func setNetworkPort(p *uint16, port uint16) {
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(p))[:], port)
}

// zoneName remembers the last interface name looked up: link-local
// traffic, the only kind with a scope, comes from one interface.
type zoneName struct {
	index uint32
	name  string
}

func (z *zoneName) lookup(index uint32) string {
	if index == z.index && z.name != "" {
		return z.name
	}
	name := strconv.FormatUint(uint64(index), 10)
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		name = ifi.Name
	}
	z.index, z.name = index, name
	return name
}

// WriteToAddrPort implements pion's AddrPortReaderWriter.
func (c *batchConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.out.send(b, addr)
}

func (c *batchConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.WriteToAddrPort(b, addr)
}

func (c *batchConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(b, addr)
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

func (c *batchConn) WriteToUDP(b []byte, addr *net.UDPAddr) (int, error) {
	if addr == nil {
		return c.UDPConn.WriteToUDP(b, addr)
	}
	return c.WriteToAddrPort(b, addr.AddrPort())
}

// closeFlushTime bounds how long Close waits to send queued datagrams
// when the socket buffer is full.
const closeFlushTime = time.Second

// Close sends the datagrams still queued, then closes the socket.
func (c *batchConn) Close() error {
	c.UDPConn.SetWriteDeadline(time.Now().Add(closeFlushTime))
	c.out.close()
	return c.UDPConn.Close()
}

func (c *batchConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.ReadFromAddrPort(b)
}

func (c *batchConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), nil
}

func (c *batchConn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	n, addr, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), nil
}

func (c *batchConn) Read(b []byte) (int, error) {
	n, _, err := c.ReadFromAddrPort(b)
	return n, err
}

// ReadMsgUDPAddrPort returns a waiting datagram first (without control
// messages, which batches do not collect), then reads as package net does.
// A waiting datagram cut to fit b is flagged MSG_TRUNC, as recvmsg flags
// one, so that a caller checking for that is not handed a cut datagram as
// whole.
func (c *batchConn) ReadMsgUDPAddrPort(b, oob []byte) (n, oobn, flags int, addr netip.AddrPort, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, addr, cut, ok := c.popLocked(b); ok {
		if cut {
			flags = unix.MSG_TRUNC
		}
		return n, 0, flags, addr, nil
	}
	return c.UDPConn.ReadMsgUDPAddrPort(b, oob)
}

func (c *batchConn) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	var ap netip.AddrPort
	n, oobn, flags, ap, err = c.ReadMsgUDPAddrPort(b, oob)
	if err == nil {
		addr = net.UDPAddrFromAddrPort(ap)
	}
	return n, oobn, flags, addr, err
}
