package socksnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pion/transport/v5"
)

// maxDatagram is the largest UDP payload plus the largest SOCKS UDP header
// (RSV, FRAG, ATYP, 16-byte address, port).
const maxDatagram = 65535 + 22

// socketBuffer is the requested size of an association's socket buffers.
const socketBuffer = 2 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// UDPConn is one UDP association (RFC 1928 §7): datagrams written to it are
// wrapped in the SOCKS UDP header and sent to the proxy's relay port, which
// forwards them; datagrams the relay forwards back are unwrapped. The
// association lives as long as its TCP control connection; if the proxy
// closes that, reads and writes fail. It implements pion's
// transport.UDPConn; as an unconnected socket it has no Read/Write target.
type UDPConn struct {
	ctrl  net.Conn     // the TCP connection the association belongs to
	udp   *net.UDPConn // connected to the relay
	relay *net.UDPAddr
	names *nameTable // the Net's placeholders for host names
	reply replyMap   // which sources answer for which placeholder

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup // the control-connection watcher
}

var _ transport.UDPConn = (*UDPConn)(nil)

func newUDPConn(ctrl net.Conn, relay *net.UDPAddr, names *nameTable) (*UDPConn, error) {
	network := "udp6"
	if relay.IP.To4() != nil {
		network = "udp4"
	}
	udp, err := net.DialUDP(network, nil, relay)
	if err != nil {
		return nil, fmt.Errorf("socksnet: udp socket to relay: %w", err)
	}
	// One association carries a whole WebRTC connection, bulk transfers
	// included; the default buffers (about 200 KB) overflow when the
	// reader is descheduled for a moment, and every drop costs a KCP
	// retransmission. The kernel caps these at its maximum.
	udp.SetReadBuffer(socketBuffer)
	udp.SetWriteBuffer(socketBuffer)
	c := &UDPConn{ctrl: ctrl, udp: udp, relay: relay, names: names, closed: make(chan struct{})}
	c.wg.Add(1)
	go c.watch()
	return c, nil
}

// watch ends the association when the proxy closes the control
// connection. The proxy sends nothing on it after the reply.
func (c *UDPConn) watch() {
	defer c.wg.Done()
	io.Copy(io.Discard, io.LimitReader(c.ctrl, 1<<20))
	c.shutdown()
}

func (c *UDPConn) shutdown() {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.ctrl.Close()
		c.udp.Close()
	})
}

// Close ends the association. It is idempotent.
func (c *UDPConn) Close() error {
	c.shutdown()
	c.wg.Wait()
	return nil
}

func (c *UDPConn) mapErr(op string, err error) error {
	select {
	case <-c.closed:
		return &net.OpError{Op: op, Net: "udp", Source: c.relay, Err: net.ErrClosed}
	default:
	}
	return err
}

// RelayAddr returns the proxy's relay address for this association.
func (c *UDPConn) RelayAddr() *net.UDPAddr { return c.relay }

// LocalAddr returns the relay address: towards the rest of the network the
// association's packets come from the proxy, not from this machine.
func (c *UDPConn) LocalAddr() net.Addr { return c.relay }

// RemoteAddr returns nil: the socket is not connected.
func (c *UDPConn) RemoteAddr() net.Addr { return nil }

// SetDeadline sets the read and write deadlines.
func (c *UDPConn) SetDeadline(t time.Time) error { return c.udp.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *UDPConn) SetReadDeadline(t time.Time) error { return c.udp.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *UDPConn) SetWriteDeadline(t time.Time) error { return c.udp.SetWriteDeadline(t) }

// SetReadBuffer sets the socket receive buffer towards the relay.
func (c *UDPConn) SetReadBuffer(n int) error { return c.udp.SetReadBuffer(n) }

// SetWriteBuffer sets the socket send buffer towards the relay.
func (c *UDPConn) SetWriteBuffer(n int) error { return c.udp.SetWriteBuffer(n) }

// errNotConnected is returned by Read and Write, which need a connected
// socket.
var errNotConnected = errors.New("socksnet: UDP association is not connected; use ReadFrom/WriteTo")

// Read is not supported on an unconnected socket.
func (c *UDPConn) Read([]byte) (int, error) { return 0, errNotConnected }

// Write is not supported on an unconnected socket.
func (c *UDPConn) Write([]byte) (int, error) { return 0, errNotConnected }

// ReadFrom reads the next datagram the relay forwards, and its source.
// Datagrams that are malformed or fragmented (FRAG != 0, which RFC 1928
// lets a client drop) are skipped.
func (c *UDPConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, a, err := c.ReadFromUDP(p)
	if err != nil {
		return n, nil, err
	}
	return n, a, nil
}

// ReadFromUDP is ReadFrom with a typed address.
func (c *UDPConn) ReadFromUDP(p []byte) (int, *net.UDPAddr, error) {
	// Reading straight into p saves a copy, but only a p that holds the
	// largest datagram with its header is safe: the kernel would cut a
	// datagram that does not fit at len(p), taking the header's length
	// off the payload even when the payload alone fits p.
	buf := p
	if len(p) < maxDatagram {
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		buf = *bp
	}
	for {
		n, err := c.udp.Read(buf)
		if err != nil {
			return 0, nil, c.mapErr("read", err)
		}
		hdr, src, err := ParseDatagram(buf[:n])
		if err != nil {
			continue
		}
		return copy(p, buf[hdr:n]), c.reply.source(src), nil
	}
}

// ReadMsgUDP reads like ReadFromUDP; there is no out-of-band data.
func (c *UDPConn) ReadMsgUDP(b, _ []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	n, addr, err = c.ReadFromUDP(b)
	return n, 0, 0, addr, err
}

// WriteTo sends p to addr through the relay.
func (c *UDPConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("socksnet: write to %v: not a UDP address", addr)
	}
	return c.WriteToUDP(p, ua)
}

// WriteToUDP sends p to addr through the relay.
func (c *UDPConn) WriteToUDP(p []byte, addr *net.UDPAddr) (int, error) {
	if addr == nil || addr.IP == nil {
		return 0, errors.New("socksnet: write: no destination address")
	}
	dst := Addr{IP: addr.IP, Port: addr.Port}
	if name, ok := c.names.name(addr.IP); ok {
		dst = Addr{Name: name, Port: addr.Port}
		c.reply.sent(addr.IP, addr.Port)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b, err := appendDatagram((*bp)[:0], dst, p)
	if err != nil {
		return 0, err
	}
	if _, err := c.udp.Write(b); err != nil {
		return 0, c.mapErr("write", err)
	}
	return len(p), nil
}

// WriteMsgUDP sends b to addr through the relay; out-of-band data cannot
// be relayed and is ignored.
func (c *UDPConn) WriteMsgUDP(b, _ []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	n, err = c.WriteToUDP(b, addr)
	return n, 0, err
}

// AppendDatagram appends the SOCKS UDP request header for dst (RFC 1928 §7:
// RSV, FRAG 0, ATYP, DST.ADDR, DST.PORT) and payload to b.
func AppendDatagram(b []byte, dst *net.UDPAddr, payload []byte) ([]byte, error) {
	return appendDatagram(b, Addr{IP: dst.IP, Port: dst.Port}, payload)
}

func appendDatagram(b []byte, dst Addr, payload []byte) ([]byte, error) {
	if len(payload) > 65535 {
		return nil, fmt.Errorf("socksnet: datagram of %d bytes is too large", len(payload))
	}
	b = append(b, 0, 0, 0)
	b, err := dst.appendTo(b)
	if err != nil {
		return nil, err
	}
	return append(b, payload...), nil
}

// Errors of ParseDatagram.
var (
	errShortDatagram = errors.New("socksnet: datagram shorter than its header")
	errFragment      = errors.New("socksnet: fragmented datagram")
	errDomainSource  = errors.New("socksnet: datagram source is a domain name")
)

// ParseDatagram parses the SOCKS UDP header of a datagram from the relay
// and returns the header length and the datagram's source address.
// Fragments and domain-name sources are refused: neither can be handed to
// pion.
func ParseDatagram(b []byte) (int, *net.UDPAddr, error) {
	if len(b) < 4 {
		return 0, nil, errShortDatagram
	}
	if b[0] != 0 || b[1] != 0 {
		return 0, nil, fmt.Errorf("socksnet: datagram has non-zero reserved bytes")
	}
	if b[2] != 0 {
		return 0, nil, errFragment
	}
	var iplen int
	switch b[3] {
	case atypIPv4:
		iplen = net.IPv4len
	case atypIPv6:
		iplen = net.IPv6len
	case atypDomain:
		return 0, nil, errDomainSource
	default:
		return 0, nil, fmt.Errorf("socksnet: datagram has unknown address type %d", b[3])
	}
	hdr := 4 + iplen + 2
	if len(b) < hdr {
		return 0, nil, errShortDatagram
	}
	ip := make(net.IP, iplen)
	copy(ip, b[4:4+iplen])
	port := int(binary.BigEndian.Uint16(b[4+iplen : hdr]))
	return hdr, &net.UDPAddr{IP: ip, Port: port}, nil
}
