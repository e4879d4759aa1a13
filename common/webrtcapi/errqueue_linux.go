package webrtcapi

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snowflake-go/snowflake/common/rawsock"
)

// ICMP types and codes that say nobody will answer at a destination.
const (
	icmpDestUnreach     = 3
	icmpNetUnreach      = 0
	icmpHostUnreach     = 1
	icmpPortUnreach     = 3
	icmp6DestUnreach    = 1
	icmp6NoRoute        = 0
	icmp6AddrUnreach    = 3
	icmp6PortUnreach    = 4
	sockExtendedErrSize = 16 // struct sock_extended_err without the offender address
)

// decodeUnreachable reads one message of a socket's error queue: name is
// its address (the destination of the datagram that failed), oob its
// control messages. It reports the destination and why it is unreachable
// when an ICMP or ICMPv6 destination-unreachable error for a network, a
// host or a port caused it. Anything else (a packet-too-big report, a
// local error, a message it cannot parse) is not a sign that the peer is
// gone, and is ignored.
func decodeUnreachable(name, oob []byte) (to netip.AddrPort, reason string, ok bool) {
	to, ok = decodeSockaddr(name)
	if !ok {
		return netip.AddrPort{}, "", false
	}
	for len(oob) >= unix.SizeofCmsghdr {
		// Copied out: the bytes need not be aligned for a Cmsghdr.
		var h unix.Cmsghdr
		copy((*[unix.SizeofCmsghdr]byte)(unsafe.Pointer(&h))[:], oob)
		if h.Len < unix.SizeofCmsghdr || uint64(h.Len) > uint64(len(oob)) {
			return netip.AddrPort{}, "", false
		}
		data := oob[unix.CmsgLen(0):h.Len]
		if (h.Level == unix.SOL_IP && h.Type == unix.IP_RECVERR) || (h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_RECVERR) {
			if reason = unreachableReason(data); reason != "" {
				return to, reason, true
			}
			return netip.AddrPort{}, "", false
		}
		next := unix.CmsgSpace(int(h.Len) - unix.CmsgLen(0))
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return netip.AddrPort{}, "", false
}

// unreachableReason names the error a sock_extended_err describes, or
// returns "" for one that does not end a peer.
func unreachableReason(ee []byte) string {
	if len(ee) < sockExtendedErrSize {
		return ""
	}
	origin, typ, code := ee[4], ee[5], ee[6]
	switch {
	case origin == unix.SO_EE_ORIGIN_ICMP && typ == icmpDestUnreach:
		switch code {
		case icmpNetUnreach:
			return "network unreachable"
		case icmpHostUnreach:
			return "host unreachable"
		case icmpPortUnreach:
			return "port unreachable"
		}
	case origin == unix.SO_EE_ORIGIN_ICMP6 && typ == icmp6DestUnreach:
		switch code {
		case icmp6NoRoute:
			return "network unreachable"
		case icmp6AddrUnreach:
			return "host unreachable"
		case icmp6PortUnreach:
			return "port unreachable"
		}
	}
	return ""
}

// decodeSockaddr converts a kernel socket address held in b as
// batchConn.addrPort does, but without the zone: a link-local proxy's
// scope does not help to recognize it, and looking it up costs an
// interface listing.
func decodeSockaddr(b []byte) (netip.AddrPort, bool) {
	var sa unix.RawSockaddrInet6
	n := copy(unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)), b)
	ap, _, ok := sockaddrAddrPort(&sa, uint32(n))
	return ap, ok
}

// errQueue reads the error queue of a socket with IP_RECVERR set. Linux
// charges queued errors to the socket's receive buffer, so every reader
// of the socket that meets a reported error drains the queue at once;
// left there, errors from a flood of ICMP would crowd out datagrams.
// The reader and the sender each have their own, as both may drain at the
// same time.
type errQueue struct {
	report func(to netip.AddrPort, reason string)
	raw    syscall.RawConn
	name   unix.RawSockaddrInet6
	oob    [128]byte // a sock_extended_err and its offender address, with room to spare
	hdr    unix.Msghdr
	drain  func(fd uintptr) // q.drainFD, bound once
	n      int              // messages read by the last drain
}

func newErrQueue(raw syscall.RawConn, report func(netip.AddrPort, string)) *errQueue {
	q := &errQueue{report: report, raw: raw}
	q.drain = q.drainFD
	return q
}

// read drains the queue and returns how many errors it held. It uses the
// socket without its read lock (RawConn.Control), which a reader waiting
// for datagrams holds.
func (q *errQueue) read() int {
	q.n = 0
	if q.raw.Control(q.drain) != nil {
		return 0
	}
	return q.n
}

func (q *errQueue) drainFD(fd uintptr) {
	for {
		q.hdr = unix.Msghdr{}
		q.hdr.Name = (*byte)(unsafe.Pointer(&q.name))
		q.hdr.Namelen = uint32(unsafe.Sizeof(q.name))
		q.hdr.Control = &q.oob[0]
		q.hdr.SetControllen(len(q.oob))
		// No data buffer: the datagram that failed is of no use, and
		// the kernel drops what does not fit.
		_, errno, done := rawsock.Syscall6(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&q.hdr)), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT, 0, 0, 0)
		if !done || errno != 0 {
			return
		}
		q.n++
		name := unsafe.Slice((*byte)(unsafe.Pointer(&q.name)), min(uintptr(q.hdr.Namelen), unsafe.Sizeof(q.name)))
		to, reason, ok := decodeUnreachable(name, q.oob[:min(int(q.hdr.Controllen), len(q.oob))])
		if ok {
			q.report(to, reason)
		}
	}
}

// setRecvErr asks the kernel to report ICMP errors for the socket's
// datagrams. An IPv6 socket also gets IP_RECVERR, for the errors about
// IPv4 destinations it sends to through mapped addresses.
func setRecvErr(raw syscall.RawConn, family int) error {
	var serr error
	err := raw.Control(func(fd uintptr) {
		if family == unix.AF_INET6 {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_RECVERR, 1); serr != nil {
				return
			}
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVERR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
