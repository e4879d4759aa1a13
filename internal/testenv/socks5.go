package testenv

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// SOCKS5Server is a SOCKS5 proxy for tests (RFC 1928 CONNECT and UDP
// ASSOCIATE, optional RFC 1929 username/password) that counts what it
// relays, so a test can prove that traffic went through it. It is written
// independently of the module's SOCKS client code, so each checks the
// other.
type SOCKS5Server struct {
	// Username and Password, when Username is set, are required of
	// clients; otherwise only "no authentication" is offered.
	Username, Password string
	// ListenRelay opens the client-facing UDP socket of an association on
	// ip (the control connection's local address). Nil uses
	// net.ListenUDP; tests that serve a client in another network
	// namespace open the socket there.
	ListenRelay func(ip net.IP) (*net.UDPConn, error)

	// Counters, updated as traffic flows.
	Requests     atomic.Int64 // requests read after authentication, granted or not
	Connects     atomic.Int64 // CONNECT requests granted
	TCPBytes     atomic.Int64 // bytes relayed by CONNECTs, both directions
	Associations atomic.Int64 // UDP ASSOCIATE requests granted
	UDPPackets   atomic.Int64 // datagrams relayed, both directions
	UDPBytes     atomic.Int64 // their payload bytes
	AuthFailures atomic.Int64

	ln    net.Listener
	mu    sync.Mutex
	conns map[io.Closer]struct{}
	wg    sync.WaitGroup
}

// ServeSOCKS5 serves s on ln until the test ends.
func ServeSOCKS5(t testing.TB, ln net.Listener, s *SOCKS5Server) *SOCKS5Server {
	t.Helper()
	s.ln = ln
	s.conns = map[io.Closer]struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !s.track(c) {
				c.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.untrack(c)
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

// Addr is the listening address.
func (s *SOCKS5Server) Addr() string { return s.ln.Addr().String() }

func (s *SOCKS5Server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *SOCKS5Server) untrack(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func (s *SOCKS5Server) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *SOCKS5Server) serve(c net.Conn) {
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != 5 {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return
	}
	want := byte(0)
	if s.Username != "" {
		want = 2
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if !offered {
		c.Write([]byte{5, 0xff})
		return
	}
	c.Write([]byte{5, want})
	if want == 2 {
		user, pass, ok := readUserPass(c)
		if !ok || user != s.Username || pass != s.Password {
			s.AuthFailures.Add(1)
			c.Write([]byte{1, 1})
			return
		}
		c.Write([]byte{1, 0})
	}
	var req [3]byte
	if _, err := io.ReadFull(c, req[:]); err != nil || req[0] != 5 {
		return
	}
	s.Requests.Add(1)
	host, port, ok := readSOCKSAddr(c)
	if !ok {
		reply(c, 8, nil)
		return
	}
	switch req[1] {
	case 1:
		s.connect(c, net.JoinHostPort(host, strconv.Itoa(port)))
	case 3:
		s.associate(c)
	default:
		reply(c, 7, nil)
	}
}

func readUserPass(r io.Reader) (string, string, bool) {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil || b[0] != 1 {
		return "", "", false
	}
	user := make([]byte, b[1])
	if _, err := io.ReadFull(r, user); err != nil {
		return "", "", false
	}
	if _, err := io.ReadFull(r, b[:1]); err != nil {
		return "", "", false
	}
	pass := make([]byte, b[0])
	if _, err := io.ReadFull(r, pass); err != nil {
		return "", "", false
	}
	return string(user), string(pass), true
}

// readSOCKSAddr reads ATYP, address and port.
func readSOCKSAddr(r io.Reader) (string, int, bool) {
	var atyp [1]byte
	if _, err := io.ReadFull(r, atyp[:]); err != nil {
		return "", 0, false
	}
	var host string
	switch atyp[0] {
	case 1, 4:
		ip := make(net.IP, 4)
		if atyp[0] == 4 {
			ip = make(net.IP, 16)
		}
		if _, err := io.ReadFull(r, ip); err != nil {
			return "", 0, false
		}
		host = ip.String()
	case 3:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return "", 0, false
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(r, name); err != nil {
			return "", 0, false
		}
		host = string(name)
	default:
		return "", 0, false
	}
	var p [2]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return "", 0, false
	}
	return host, int(binary.BigEndian.Uint16(p[:])), true
}

// reply sends a reply with the bound address (IPv4 zero when nil).
func reply(w io.Writer, code byte, bound *net.UDPAddr) {
	b := []byte{5, code, 0}
	b = appendSOCKSAddr(b, bound)
	w.Write(b)
}

func appendSOCKSAddr(b []byte, a *net.UDPAddr) []byte {
	ip, port := net.IPv4zero.To4(), 0
	if a != nil {
		ip, port = a.IP, a.Port
	}
	if ip4 := ip.To4(); ip4 != nil {
		b = append(append(b, 1), ip4...)
	} else {
		b = append(append(b, 4), ip.To16()...)
	}
	return binary.BigEndian.AppendUint16(b, uint16(port))
}

func (s *SOCKS5Server) connect(c net.Conn, target string) {
	out, err := net.Dial("tcp", target)
	if err != nil {
		reply(c, 5, nil)
		return
	}
	if !s.track(out) {
		out.Close()
		return
	}
	defer s.untrack(out)
	defer out.Close()
	la := out.LocalAddr().(*net.TCPAddr)
	reply(c, 0, &net.UDPAddr{IP: la.IP, Port: la.Port})
	s.Connects.Add(1)
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(countingWriter{dst, &s.TCPBytes}, src)
		// Half-close so the other direction can finish.
		if tc, ok := dst.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go cp(out, c)
	go cp(c, out)
	wg.Wait()
}

func (s *SOCKS5Server) associate(c net.Conn) {
	ip := c.LocalAddr().(*net.TCPAddr).IP
	listen := s.ListenRelay
	if listen == nil {
		listen = func(ip net.IP) (*net.UDPConn, error) {
			return net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		}
	}
	relay, err := listen(ip)
	if err != nil {
		reply(c, 1, nil)
		return
	}
	out, err := net.ListenUDP("udp", nil)
	if err != nil {
		relay.Close()
		reply(c, 1, nil)
		return
	}
	for _, c := range []*net.UDPConn{relay, out} {
		c.SetReadBuffer(4 << 20)
		c.SetWriteBuffer(4 << 20)
	}
	if !s.track(relay) || !s.track(out) {
		relay.Close()
		out.Close()
		return
	}
	defer s.untrack(relay)
	defer s.untrack(out)
	reply(c, 0, relay.LocalAddr().(*net.UDPAddr))
	s.Associations.Add(1)

	clientIP := c.RemoteAddr().(*net.TCPAddr).IP
	var client atomic.Pointer[net.UDPAddr]
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		// client → destination
		defer wg.Done()
		buf := make([]byte, 65535+22)
		for {
			n, from, err := relay.ReadFromUDP(buf)
			if err != nil {
				return
			}
			// Only well-formed requests from the control connection's
			// host count; the first fixes the client's port. Anything
			// else (a WebRTC peer pinging an advertised relay address,
			// say) is not ours to relay.
			if n < 4 || buf[0] != 0 || buf[1] != 0 || buf[2] != 0 || !from.IP.Equal(clientIP) {
				continue
			}
			if cl := client.Load(); cl == nil {
				client.Store(from)
			} else if cl.Port != from.Port {
				continue
			}
			r := bytesReader(buf[3:n])
			host, port, ok := readSOCKSAddr(r)
			if !ok {
				continue
			}
			dst, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				continue
			}
			// Counted before the write: whoever receives the datagram
			// must already see it counted (tests compare right after).
			s.UDPPackets.Add(1)
			s.UDPBytes.Add(int64(len(r.b)))
			if _, err := out.WriteToUDP(r.b, dst); err != nil {
				s.UDPPackets.Add(-1)
				s.UDPBytes.Add(-int64(len(r.b)))
			}
		}
	}()
	go func() {
		// destination → client
		defer wg.Done()
		buf := make([]byte, 65535+22)
		for {
			n, from, err := out.ReadFromUDP(buf[22:])
			if err != nil {
				return
			}
			cl := client.Load()
			if cl == nil {
				continue
			}
			h := appendSOCKSAddr([]byte{0, 0, 0}, from)
			start := 22 - len(h)
			copy(buf[start:], h)
			s.UDPPackets.Add(1)
			s.UDPBytes.Add(int64(n))
			if _, err := relay.WriteToUDP(buf[start:22+n], cl); err != nil {
				s.UDPPackets.Add(-1)
				s.UDPBytes.Add(-int64(n))
			}
		}
	}()
	// The association lasts as long as the control connection.
	io.Copy(io.Discard, c)
	relay.Close()
	out.Close()
	wg.Wait()
}

// sliceReader reads a byte slice and remembers how much is left.
type sliceReader struct{ b []byte }

func bytesReader(b []byte) *sliceReader { return &sliceReader{b: b} }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// countingWriter adds what it writes to a counter as it goes, so counts
// are current while a connection is still open.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
