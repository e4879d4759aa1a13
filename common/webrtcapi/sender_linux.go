package webrtcapi

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snowflake-go/snowflake/common/rawsock"
)

const (
	// maxQueued bounds the datagrams waiting for a sender. A writer that
	// finds the queue full waits, passing back-pressure on as a blocking
	// sendto would.
	maxQueued = 64
	// sendBufSize is the capacity of the buffers a sender keeps for reuse;
	// a longer datagram gets a buffer of its own.
	sendBufSize = 2048
	// maxSegments and maxGSOBytes bound one UDP_SEGMENT message: the
	// kernel takes at most 64 segments, and the whole must fit one IP
	// packet's length field.
	maxSegments = 64
	maxGSOBytes = 65000
	// cmsgSize holds one control message with a 16-bit value.
	cmsgSize = 24
	// yieldBelow is the batch under which a woken sender first lets the
	// goroutines already runnable go (see run).
	yieldBelow = 4
)

// sender moves a socket's outgoing datagrams to one goroutine, which
// sends whatever has queued since its last call with one sendmmsg. pion
// writes a data channel's packets one at a time from a single goroutine
// (a proxy relaying tens of MB/s makes some 30,000 such writes a second);
// while that goroutine runs, its datagrams queue, and the sender's
// goroutine takes them all when it gets to run: right after, or, when only
// a few wait, once the goroutines already runnable have had their turn.
//
// A send error is reported by the next write: pion only logs send errors,
// and UDP promises no delivery either way.
type sender struct {
	raw    syscall.RawConn
	family int // the socket's address family, which decides how destinations are written
	laddr  net.Addr

	mu      sync.Mutex
	cond    sync.Cond // the queue shrank, or the sender closed
	queue   []datagram
	spare   []datagram // the previous batch's slice, reused
	free    [][]byte   // buffers to reuse
	err     error      // a send error not yet reported
	closed  bool
	started bool
	wake    chan struct{} // the queue became non-empty, or the sender closed
	done    chan struct{} // the goroutine ended

	// Used by the goroutine alone.
	errq     *errQueue // the sender's, when ICMP errors are reported
	gso      bool      // send runs of equal datagrams as one buffer (UDP_SEGMENT)
	hdrs     [maxQueued]unix.Mmsghdr
	iovs     [maxQueued]unix.Iovec
	cmsgs    [maxQueued][cmsgSize]byte // a UDP_SEGMENT control message per message
	segments [maxQueued]int            // datagrams in each message
	messages int                       // messages sent, for tests
	batches  int                       // batches flushed, for tests
	write    func(fd uintptr) bool     // s.sendmmsg, bound once: a closure per flush would allocate
	sent     int                       // hdrs[sent:total] remain to be sent
	total    int
	n        int // sendmmsg's results
	errno    syscall.Errno
}

// datagram is a queued datagram and its destination as a kernel address.
type datagram struct {
	buf   []byte
	to    unix.RawSockaddrInet6 // or a RawSockaddrInet4 in its first bytes
	tolen uint32
}

func newSender(raw syscall.RawConn, family int, laddr net.Addr) *sender {
	s := &sender{raw: raw, family: family, laddr: laddr, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.cond.L = &s.mu
	s.write = s.sendmmsg
	s.gso = true
	return s
}

// socketFamily returns AF_INET or AF_INET6 for the socket.
func socketFamily(raw syscall.RawConn) (int, error) {
	var sa unix.Sockaddr
	var serr error
	if err := raw.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	switch sa.(type) {
	case *unix.SockaddrInet4:
		return unix.AF_INET, nil
	case *unix.SockaddrInet6:
		return unix.AF_INET6, nil
	}
	return 0, unix.EAFNOSUPPORT
}

// send queues a copy of b for addr.
func (s *sender) send(b []byte, addr netip.AddrPort) (int, error) {
	var d datagram
	if err := s.sockaddr(addr, &d); err != nil {
		return 0, s.opError(err, addr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.queue) >= maxQueued && !s.closed {
		s.cond.Wait()
	}
	if s.closed {
		return 0, s.opError(net.ErrClosed, addr)
	}
	if n := len(s.free); n > 0 && len(b) <= sendBufSize {
		d.buf = append(s.free[n-1], b...)
		s.free = s.free[:n-1]
	} else {
		d.buf = append(make([]byte, 0, max(len(b), sendBufSize)), b...)
	}
	s.queue = append(s.queue, d)
	if len(s.queue) == 1 {
		if !s.started {
			s.started = true
			go s.run()
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	if err := s.err; err != nil {
		s.err = nil
		return len(b), s.opError(err, addr)
	}
	return len(b), nil
}

func (s *sender) run() {
	defer close(s.done)
	for range s.wake {
		s.mu.Lock()
		if len(s.queue) < yieldBelow && !s.closed {
			// The rest of a burst is usually on its way. pion's DTLS 1.3
			// connection hands each record over through an exchange
			// between the writer and two goroutines of its own
			// (pion/dtls's DetachedConn, pion/webrtc's detacheddtls), so
			// the sender, readied by a burst's first datagram, used to
			// run before the second was written. On a proxy relaying 10
			// or 50 downloads, 70–80% of its sendmmsg calls carried a
			// single datagram, and each woke a client for that datagram
			// alone. Gosched lets every goroutine already runnable go
			// first; with none, the sender runs again at once.
			s.mu.Unlock()
			runtime.Gosched()
			s.mu.Lock()
		}
		closed := s.closed
		batch := s.queue
		s.queue = s.spare[:0]
		s.mu.Unlock()

		if len(batch) > 0 {
			s.batches++
		}
		err := s.flush(batch)
		if closed {
			return
		}

		s.mu.Lock()
		for i := range batch {
			if cap(batch[i].buf) == sendBufSize && len(s.free) < maxQueued {
				s.free = append(s.free, batch[i].buf[:0])
			}
			batch[i].buf = nil
		}
		s.spare = batch[:0]
		if err != nil && s.err == nil {
			s.err = err
		}
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// flush sends batch, waiting while the socket buffer is full. A datagram
// the kernel refuses is skipped; the first such error is returned.
func (s *sender) flush(batch []datagram) error {
	var first error
	retries := 0
	for from := 0; from < len(batch); {
		s.build(batch, from)
		for s.sent = 0; s.sent < s.total; {
			if err := s.raw.Write(s.write); err != nil {
				return err // closed
			}
			if s.errno == 0 {
				s.sent += s.n
				s.messages += s.n
				retries = 0
				continue
			}
			if s.errq != nil && s.icmpRefused(retries) {
				retries++
				continue
			}
			// Message sent was refused (sendmmsg reports an error only
			// when it sent nothing).
			if s.segments[s.sent] > 1 && gsoRefused(s.errno) {
				// The route cannot segment (no checksum offload, a
				// smaller MTU, an old kernel): send singly from now on.
				s.gso = false
				break
			}
			if first == nil {
				first = os.NewSyscallError("sendmmsg", s.errno)
			}
			s.sent++
		}
		// Continue after the messages sent or skipped.
		for _, n := range s.segments[:s.sent] {
			from += n
		}
		if s.sent == s.total {
			break
		}
	}
	return first
}

// maxICMPRetries bounds how often one message is sent again after errors
// that ICMP reports caused, so that a flood of them cannot hold the
// sender.
const maxICMPRetries = 4

// icmpRefused reports whether the message that sendmmsg refused should be
// sent again: on a socket with IP_RECVERR, an ICMP error makes the next
// send fail once, whichever its destination, and a datagram to a live
// peer would be lost for an error about another (an old ICE check to a
// dead candidate, say). Draining the queue makes the reports. The first
// refusal is always retried (the reader may have drained the queue
// already); a repeated one only if new errors were queued, so that a
// refusal of the message itself (no route) is not retried forever.
func (s *sender) icmpRefused(retries int) bool {
	queued := s.errq.read()
	return retries == 0 || (queued > 0 && retries < maxICMPRetries)
}

// gsoRefused reports whether errno is how the kernel refuses to segment.
func gsoRefused(errno syscall.Errno) bool {
	switch errno {
	case unix.EIO, unix.EINVAL, unix.ENOPROTOOPT, unix.EOPNOTSUPP, unix.EMSGSIZE:
		return true
	}
	return false
}

// build fills hdrs with batch[from:], one message per datagram, or, while
// GSO works, one per run of datagrams to the same destination that the
// kernel can cut from one buffer (UDP_SEGMENT): equal lengths, the last
// possibly shorter. pion's full-size SCTP packets come in such runs, and
// a run costs the network stack one pass instead of one per datagram.
func (s *sender) build(batch []datagram, from int) {
	s.total = 0
	for i := from; i < len(batch); {
		d := &batch[i]
		k, size := 1, len(d.buf)
		if s.gso && size > 0 {
			for total := size; i+k < len(batch) && k < maxSegments; k++ {
				next := &batch[i+k]
				n := len(next.buf)
				if n == 0 || n > size || len(batch[i+k-1].buf) < size || total+n > maxGSOBytes ||
					next.tolen != d.tolen || next.to != d.to {
					break
				}
				total += n
			}
		}
		for j := range k {
			b := batch[i+j].buf
			s.iovs[i+j] = unix.Iovec{}
			if len(b) > 0 {
				s.iovs[i+j].Base = &b[0]
				s.iovs[i+j].SetLen(len(b))
			}
		}
		h := &s.hdrs[s.total]
		*h = unix.Mmsghdr{}
		h.Hdr.Name = (*byte)(unsafe.Pointer(&d.to))
		h.Hdr.Namelen = d.tolen
		h.Hdr.Iov = &s.iovs[i]
		h.Hdr.SetIovlen(k)
		if k > 1 {
			c := &s.cmsgs[s.total]
			hdr := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			hdr.Level = unix.SOL_UDP
			hdr.Type = unix.UDP_SEGMENT
			hdr.SetLen(unix.CmsgLen(2))
			binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(size))
			h.Hdr.Control = &c[0]
			h.Hdr.SetControllen(unix.CmsgSpace(2))
		}
		s.segments[s.total] = k
		s.total++
		i += k
	}
}

// sendmmsg is the raw.Write callback of flush: it sends hdrs[sent:total].
func (s *sender) sendmmsg(fd uintptr) bool {
	var done bool
	s.n, s.errno, done = mmsg(unix.SYS_SENDMMSG, fd, s.hdrs[s.sent:s.total])
	return done
}

// close sends what is queued, as a socket sends what was written before
// it closed, and stops the goroutine. Writes fail from now on. The caller
// bounds the time this takes with a write deadline, and closes the socket
// afterwards.
func (s *sender) close() {
	s.mu.Lock()
	s.closed = true
	started := s.started
	s.cond.Broadcast()
	s.mu.Unlock()
	if started {
		select {
		case s.wake <- struct{}{}:
		default:
		}
		<-s.done
	}
}

// sockaddr writes addr into d as the socket's family needs it: an IPv4
// socket takes IPv4 (or IPv4-mapped) addresses, an IPv6 socket any, with
// IPv4 ones mapped, as package net does.
func (s *sender) sockaddr(addr netip.AddrPort, d *datagram) error {
	ip := addr.Addr()
	if !ip.IsValid() {
		return &net.AddrError{Err: "invalid address", Addr: addr.String()}
	}
	switch s.family {
	case unix.AF_INET:
		ip = ip.Unmap()
		if !ip.Is4() {
			return &net.AddrError{Err: "non-IPv4 address", Addr: ip.String()}
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&d.to))
		sa.Family = unix.AF_INET
		setNetworkPort(&sa.Port, addr.Port())
		sa.Addr = ip.As4()
		d.tolen = unix.SizeofSockaddrInet4
	default:
		d.to.Family = unix.AF_INET6
		setNetworkPort(&d.to.Port, addr.Port())
		d.to.Addr = ip.As16()
		if zone := ip.Zone(); zone != "" {
			ifi, err := net.InterfaceByName(zone)
			if err != nil {
				return &net.AddrError{Err: "unknown zone", Addr: ip.String()}
			}
			d.to.Scope_id = uint32(ifi.Index)
		}
		d.tolen = unix.SizeofSockaddrInet6
	}
	return nil
}

func (s *sender) opError(err error, addr netip.AddrPort) error {
	var to net.Addr
	if addr.IsValid() {
		to = net.UDPAddrFromAddrPort(addr)
	}
	return rawsock.OpError("write", s.laddr, to, err)
}
