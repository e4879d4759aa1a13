// Package stunserver is an RFC 5780 STUN server for loopback tests.
//
// Snowflake peers classify their NAT with RFC 5780 behaviour discovery, and
// the Debian 2.5.1 binaries only ever use server-reflexive candidates, so
// every loopback test that involves WebRTC needs a STUN server that answers
// Binding requests with XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, RESPONSE-ORIGIN and
// OTHER-ADDRESS and honours CHANGE-REQUEST. The server listens on four UDP
// sockets:
//
//	primary IP   : primary port     (the address in URL)
//	primary IP   : alternate port
//	alternate IP : primary port
//	alternate IP : alternate port   (OTHER-ADDRESS of the first)
//
// A response normally leaves from the socket the request arrived on;
// CHANGE-REQUEST's change-IP and change-port flags select the socket with the
// other IP and/or the other port instead (RFC 5780 §6.1).
//
// Messages are encoded and decoded with pion/stun. Requests other than
// Binding, responses, indications and undecodable datagrams are ignored, as a
// STUN server on the open network would do.
package stunserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/pion/stun/v4"
)

// Flags of the CHANGE-REQUEST attribute value (RFC 5780 §7.2).
const (
	changeIP   = 0x04
	changePort = 0x02
)

// maxDatagram bounds a STUN request we read; larger datagrams are truncated
// and then fail to decode.
const maxDatagram = 1500

// Socket indices: bit 1 = alternate IP, bit 0 = alternate port.
const (
	primaryPrimary     = 0
	primaryAlternate   = 1
	alternatePrimary   = 2
	alternateAlternate = 3
)

// Server is a running STUN server. Close stops it.
type Server struct {
	conns [4]*net.UDPConn // indexed as above; entries 2 and 3 nil without an alternate IP
	addrs [4]netip.AddrPort

	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// Listen starts a server on primaryIP and alternateIP (two IP literals, e.g.
// "127.0.0.1" and "127.0.0.2"), with two ports chosen by the kernel that are
// free on both IPs. If alternateIP is empty the server listens only on
// primaryIP:primaryPort, answers plain RFC 5389 Binding requests without
// OTHER-ADDRESS, and refuses CHANGE-REQUEST with error 420.
func Listen(primaryIP, alternateIP string) (*Server, error) {
	p, err := netip.ParseAddr(primaryIP)
	if err != nil {
		return nil, fmt.Errorf("stunserver: primary IP: %w", err)
	}
	var a netip.Addr
	if alternateIP != "" {
		if a, err = netip.ParseAddr(alternateIP); err != nil {
			return nil, fmt.Errorf("stunserver: alternate IP: %w", err)
		}
		if a == p {
			return nil, errors.New("stunserver: primary and alternate IP are the same")
		}
		if a.Is4() != p.Is4() {
			return nil, errors.New("stunserver: primary and alternate IP are of different families")
		}
	}
	s := &Server{}
	if err := s.bind(p, a); err != nil {
		return nil, err
	}
	for i, c := range s.conns {
		if c == nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(i)
		}()
	}
	return s, nil
}

// bind opens the sockets. A port the kernel picks on one IP may be taken on
// the other, so it retries with fresh ports a few times.
func (s *Server) bind(p, a netip.Addr) error {
	var lastErr error
	for range 20 {
		conns, err := bindOnce(p, a)
		if err == nil {
			s.conns = conns
			for i, c := range conns {
				if c != nil {
					s.addrs[i] = c.LocalAddr().(*net.UDPAddr).AddrPort()
				}
			}
			return nil
		}
		lastErr = err
	}
	return fmt.Errorf("stunserver: listen: %w", lastErr)
}

func bindOnce(p, a netip.Addr) ([4]*net.UDPConn, error) {
	var conns [4]*net.UDPConn
	fail := func(err error) ([4]*net.UDPConn, error) {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return [4]*net.UDPConn{}, err
	}
	listen := func(ip netip.Addr, port uint16) (*net.UDPConn, error) {
		return net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
	}
	var err error
	if conns[primaryPrimary], err = listen(p, 0); err != nil {
		return fail(err)
	}
	if !a.IsValid() {
		return conns, nil
	}
	if conns[primaryAlternate], err = listen(p, 0); err != nil {
		return fail(err)
	}
	pPort := conns[primaryPrimary].LocalAddr().(*net.UDPAddr).AddrPort().Port()
	aPort := conns[primaryAlternate].LocalAddr().(*net.UDPAddr).AddrPort().Port()
	if conns[alternatePrimary], err = listen(a, pPort); err != nil {
		return fail(err)
	}
	if conns[alternateAlternate], err = listen(a, aPort); err != nil {
		return fail(err)
	}
	return conns, nil
}

// URL returns the STUN URL of the primary address, e.g. "stun:127.0.0.1:3478".
func (s *Server) URL() string {
	ap := s.addrs[primaryPrimary]
	return "stun:" + net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(ap.Port())))
}

// Addr returns the primary address.
func (s *Server) Addr() netip.AddrPort { return s.addrs[primaryPrimary] }

// OtherAddr returns the alternate-IP, alternate-port address (the
// OTHER-ADDRESS of the primary address), or the zero value without an
// alternate IP.
func (s *Server) OtherAddr() netip.AddrPort { return s.addrs[alternateAlternate] }

// Close stops the server and waits for its goroutines. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for _, c := range s.conns {
			if c != nil {
				errs = append(errs, c.Close())
			}
		}
		s.wg.Wait()
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("stunserver: close: %w", err)
		}
	})
	return s.closeErr
}

// serve reads requests on socket i until it is closed.
func (s *Server) serve(i int) {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := s.conns[i].ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient errors (e.g. ICMP port unreachable reported on
			// a later read) must not stop the server.
			continue
		}
		out, resp, ok := s.respond(i, buf[:n], from)
		if !ok {
			continue
		}
		// A failed send is the client's loss, like a dropped datagram.
		_, _ = s.conns[out].WriteToUDPAddrPort(resp, from)
	}
}

// respond builds the answer to a datagram that arrived on socket i from
// from. It returns the socket to send it from, the encoded response, and
// false if nothing should be sent.
func (s *Server) respond(i int, b []byte, from netip.AddrPort) (int, []byte, bool) {
	if !stun.IsMessage(b) {
		return 0, nil, false
	}
	req := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := req.Decode(); err != nil {
		return 0, nil, false
	}
	if req.Type != stun.BindingRequest {
		return 0, nil, false
	}
	out := i
	if v, err := req.Get(stun.AttrChangeRequest); err == nil {
		if len(v) != 4 {
			return i, errorResponse(req, stun.CodeBadRequest), true
		}
		flags := v[3]
		if flags&(changeIP|changePort) != 0 && s.conns[alternateAlternate] == nil {
			return i, errorResponse(req, stun.CodeUnknownAttribute, stun.AttrChangeRequest), true
		}
		if flags&changeIP != 0 {
			out ^= 2
		}
		if flags&changePort != 0 {
			out ^= 1
		}
	}
	mapped := from.Addr().Unmap()
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.BindingSuccess,
		&stun.XORMappedAddress{IP: mapped.AsSlice(), Port: int(from.Port())},
		&stun.MappedAddress{IP: mapped.AsSlice(), Port: int(from.Port())},
		&stun.ResponseOrigin{IP: s.addrs[out].Addr().AsSlice(), Port: int(s.addrs[out].Port())},
	}
	if s.conns[alternateAlternate] != nil {
		// OTHER-ADDRESS differs from the receiving address in both IP and
		// port (RFC 5780 §7.4).
		other := s.addrs[i^3]
		setters = append(setters, &stun.OtherAddress{IP: other.Addr().AsSlice(), Port: int(other.Port())})
	}
	setters = append(setters, stun.Fingerprint)
	resp, err := stun.Build(setters...)
	if err != nil {
		return 0, nil, false
	}
	return out, resp.Raw, true
}

// errorResponse builds a Binding error response; unknown lists the attributes
// reported with error 420.
func errorResponse(req *stun.Message, code stun.ErrorCode, unknown ...stun.AttrType) []byte {
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.BindingError,
		code,
	}
	if len(unknown) > 0 {
		setters = append(setters, stun.UnknownAttributes(unknown))
	}
	setters = append(setters, stun.Fingerprint)
	resp, err := stun.Build(setters...)
	if err != nil {
		return nil
	}
	return resp.Raw
}
