//go:build !js

package dtlsshape

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/transport/v5"

	"github.com/snowflake-go/snowflake/common/webrtcapi"
)

// Browsers send their first ClientHello in records whose version field is
// DTLS 1.0 (0xfeff), since no version has been agreed yet; pion writes
// DTLS 1.2 (0xfefd), a difference visible to any classifier. The record
// header of an epoch-0 record is covered by no MAC or transcript, so the
// sockets of a shaped peer rewrite that one field on the way out. pion
// peers (all deployed Snowflake versions) accept either value, as they
// must for browsers.

const (
	recordHeaderLen      = 13
	contentTypeHandshake = 22
	versionDTLS10        = 0xfeff
	versionDTLS12        = 0xfefd
	handshakeClientHello = 1
)

// rewriteHelloRecords returns b with the version of every epoch-0
// ClientHello record set to DTLS 1.0. b itself is never modified (pion
// may retransmit from it); a copy is made only when a record changes.
// Anything that is not a well-formed sequence of DTLS records (STUN, a
// truncated datagram) is returned as it is.
func rewriteHelloRecords(b []byte) []byte {
	if len(b) < recordHeaderLen+1 || b[0] != contentTypeHandshake {
		return b
	}
	out := b
	for off := 0; off < len(b); {
		if len(b)-off < recordHeaderLen {
			return b
		}
		h := b[off : off+recordHeaderLen]
		n := int(binary.BigEndian.Uint16(h[11:]))
		if len(b)-off-recordHeaderLen < n {
			return b
		}
		epoch := binary.BigEndian.Uint16(h[3:])
		if h[0] == contentTypeHandshake && epoch == 0 && n > 0 && b[off+recordHeaderLen] == handshakeClientHello &&
			binary.BigEndian.Uint16(h[1:]) == versionDTLS12 {
			if &out[0] == &b[0] {
				out = append([]byte(nil), b...)
			}
			binary.BigEndian.PutUint16(out[off+1:], versionDTLS10)
		}
		off += recordHeaderLen + n
	}
	return out
}

// WrapNet returns the network of a shaped peer: inner (nil: the
// operating system's) as webrtcapi.Net makes it, with UDP sockets that
// write ClientHello records as browsers do; opts are webrtcapi.Net's.
func WrapNet(inner transport.Net, opts ...webrtcapi.Option) (transport.Net, error) {
	n, err := webrtcapi.Net(inner, opts...)
	if err != nil {
		return nil, fmt.Errorf("dtlsshape: %w", err)
	}
	return shapingNet{Net: n}, nil
}

type shapingNet struct{ transport.Net }

func (n shapingNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return newShapingUDPConn(c), nil
}

func (n shapingNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	if u, ok := c.(transport.UDPConn); ok {
		return newShapingUDPConn(u), nil
	}
	return shapingPacketConn{c}, nil
}

// shapingUDPConn rewrites outgoing hellos. It keeps the allocation-free
// netip path of the inner socket, which pion's ICE uses when offered.
type shapingUDPConn struct {
	transport.UDPConn
	fast addrPortConn // nil when the inner conn has no netip path
}

// addrPortConn is pion's ice.AddrPortReaderWriter, which webrtcapi's
// sockets implement.
type addrPortConn interface {
	ReadFromAddrPort([]byte) (int, netip.AddrPort, error)
	WriteToAddrPort([]byte, netip.AddrPort) (int, error)
}

// rawAddrPort gives a plain operating-system socket the netip path.
type rawAddrPort struct{ *net.UDPConn }

func (c rawAddrPort) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.ReadFromUDPAddrPort(b)
}

func (c rawAddrPort) WriteToAddrPort(b []byte, a netip.AddrPort) (int, error) {
	return c.WriteToUDPAddrPort(b, a)
}

func newShapingUDPConn(c transport.UDPConn) *shapingUDPConn {
	s := &shapingUDPConn{UDPConn: c}
	switch inner := c.(type) {
	case addrPortConn:
		s.fast = inner
	case *net.UDPConn:
		s.fast = rawAddrPort{inner}
	}
	return s
}

func (c *shapingUDPConn) Write(b []byte) (int, error) {
	return c.UDPConn.Write(rewriteHelloRecords(b))
}

func (c *shapingUDPConn) WriteTo(b []byte, a net.Addr) (int, error) {
	return c.UDPConn.WriteTo(rewriteHelloRecords(b), a)
}

func (c *shapingUDPConn) WriteToUDP(b []byte, a *net.UDPAddr) (int, error) {
	return c.UDPConn.WriteToUDP(rewriteHelloRecords(b), a)
}

func (c *shapingUDPConn) WriteMsgUDP(b, oob []byte, a *net.UDPAddr) (int, int, error) {
	return c.UDPConn.WriteMsgUDP(rewriteHelloRecords(b), oob, a)
}

// ReadFromAddrPort and WriteToAddrPort implement ice.AddrPortReaderWriter.
func (c *shapingUDPConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	if c.fast != nil {
		return c.fast.ReadFromAddrPort(b)
	}
	n, a, err := c.UDPConn.ReadFrom(b)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return n, netip.AddrPort{}, fmt.Errorf("dtlsshape: read from a %T", a)
	}
	return n, ua.AddrPort(), nil
}

func (c *shapingUDPConn) WriteToAddrPort(b []byte, a netip.AddrPort) (int, error) {
	if c.fast != nil {
		return c.fast.WriteToAddrPort(rewriteHelloRecords(b), a)
	}
	return c.UDPConn.WriteTo(rewriteHelloRecords(b), net.UDPAddrFromAddrPort(a))
}

type shapingPacketConn struct{ net.PacketConn }

func (c shapingPacketConn) WriteTo(b []byte, a net.Addr) (int, error) {
	return c.PacketConn.WriteTo(rewriteHelloRecords(b), a)
}
