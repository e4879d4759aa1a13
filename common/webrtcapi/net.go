//go:build !js

package webrtcapi

import (
	"fmt"
	"net"

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
func Net(inner transport.Net) (transport.Net, error) {
	if inner != nil {
		return bufferedNet{Net: inner}, nil
	}
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("webrtcapi: %w", err)
	}
	return bufferedNet{Net: n, os: true}, nil
}

type bufferedNet struct {
	transport.Net
	os bool // the inner network is the operating system's
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
	return prepare(c).(transport.UDPConn), nil
}

func (n bufferedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return prepare(c), nil
}

// prepare asks for the larger receive buffer where the socket has one,
// and returns an operating-system socket as a batchConn (on Linux), which
// reads and writes in batches and offers pion its allocation-free address
// path; other sockets are returned as they are. A refused buffer leaves
// the default, which works, only with more losses under load; there is
// nothing better to do with the error.
func prepare(c net.PacketConn) net.PacketConn {
	if s, ok := c.(interface{ SetReadBuffer(int) error }); ok {
		_ = s.SetReadBuffer(ReceiveBuffer)
	}
	if u, ok := c.(*net.UDPConn); ok {
		return newBatchConn(u)
	}
	return c
}
