//go:build !js

package webrtcapi

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// ReceiveBuffer is the kernel receive buffer, in bytes, that every peer
// socket asks for. Linux caps it at net.core.rmem_max (often 208 KiB).
//
// A peer that is descheduled for a moment (a busy proxy, a client sharing
// a small machine) lets datagrams pile up in its socket. Linux's default
// buffer holds about 200 of them; a data channel moving tens of MB/s
// overruns that, and pion's SCTP repairs a burst of losses only by its
// retransmission timer, which is at least one second. On loopback that
// made single-stream downloads bimodal (about 45 MB/s, or 15–25 MB/s with
// one or two such stalls); with this buffer no datagram was dropped and
// the slow mode was gone. The memory is used only while the reader lags.
const ReceiveBuffer = 4 << 20

// Net returns the network that Snowflake's peers gather candidates and
// send on: inner (nil: the operating system's), with every UDP socket
// asking for a ReceiveBuffer-sized receive buffer. An inner network whose
// sockets have no such buffer (a SOCKS relay, a virtual network) is used
// as it is.
//
// On the operating system's network, interfaces are listed afresh on
// every call, as pion's default network does for each PeerConnection: a
// proxy that runs for weeks must see its addresses change.
func Net(inner transport.Net, opts ...Option) (transport.Net, error) {
	n := bufferedNet{Net: inner}
	if inner == nil {
		s, err := stdnet.NewNet()
		if err != nil {
			return nil, fmt.Errorf("webrtcapi: %w", err)
		}
		n.Net, n.os = s, true
	}
	for _, o := range opts {
		o(&n)
	}
	return n, nil
}

// An Option changes the sockets that Net makes.
type Option func(*bufferedNet)

// ReportUnreachable has every operating-system socket report the ICMP
// errors that say a destination it sent to is unreachable (network,
// host or port; see decodeUnreachable), on Linux: report is called with
// the destination and a short reason. A proxy that dies on a live host
// is known this way at the next datagram sent to it, where ICE notices
// only after seconds of silence; the host, or the NAT in front of it,
// answers for the closed port.
//
// Such errors also surface as a failure of the socket's next read or
// write, which these sockets retry instead of returning, so callers see
// no difference but the reports. report is called from the socket's
// reader or sender and must not block, nor close the socket.
func ReportUnreachable(report func(to netip.AddrPort, reason string)) Option {
	return func(n *bufferedNet) { n.unreachable = report }
}

type bufferedNet struct {
	transport.Net
	os          bool // the inner network is the operating system's
	unreachable func(netip.AddrPort, string)
}

func (n bufferedNet) current() (transport.Net, error) {
	if !n.os {
		return n.Net, nil
	}
	s, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("webrtcapi: %w", err)
	}
	return s, nil
}

func (n bufferedNet) Interfaces() ([]*transport.Interface, error) {
	c, err := n.current()
	if err != nil {
		return nil, err
	}
	return c.Interfaces()
}

func (n bufferedNet) InterfaceByIndex(index int) (*transport.Interface, error) {
	c, err := n.current()
	if err != nil {
		return nil, err
	}
	return c.InterfaceByIndex(index)
}

func (n bufferedNet) InterfaceByName(name string) (*transport.Interface, error) {
	c, err := n.current()
	if err != nil {
		return nil, err
	}
	return c.InterfaceByName(name)
}

// ListenUDP and ListenPacket return sockets as prepare makes them.
func (n bufferedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	// Both the inner socket and its batchConn are transport.UDPConns.
	return prepare(c, n.unreachable).(transport.UDPConn), nil
}

func (n bufferedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return prepare(c, n.unreachable), nil
}

// prepare asks for the larger receive buffer where the socket has one,
// and returns an operating-system socket as a batchConn (on Linux), which
// reads and writes in batches and offers pion its allocation-free address
// path; other sockets are returned as they are. A refused buffer leaves
// the default, which works, only with more losses under load; there is
// nothing better to do with the error. unreachable, if not nil, is the
// ReportUnreachable callback.
func prepare(c net.PacketConn, unreachable func(netip.AddrPort, string)) net.PacketConn {
	if s, ok := c.(interface{ SetReadBuffer(int) error }); ok {
		_ = s.SetReadBuffer(ReceiveBuffer)
	}
	if u, ok := c.(*net.UDPConn); ok {
		return newBatchConn(u, unreachable)
	}
	return c
}
