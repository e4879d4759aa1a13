// Package socksnet reaches the network through a SOCKS5 proxy (RFC 1928,
// with RFC 1929 username/password authentication): TCP streams with
// CONNECT, UDP datagrams with UDP ASSOCIATE. [Net] is also a pion
// transport.Net, so that a WebRTC peer connection built with it sends every
// packet (STUN, ICE, DTLS, SCTP) through the proxy. This is how the client
// honours tor's TOR_PT_PROXY without traffic leaking around the proxy.
// Host names are left to the proxy to resolve (in the CONNECT request, or
// in each datagram's header), so no DNS query goes around it either.
package socksnet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// SOCKS5 constants (RFC 1928 §3–§7, RFC 1929 §2).
const (
	version5 = 5

	authNone         = 0x00
	authUserPass     = 0x02
	authNoAcceptable = 0xff
	userPassVersion  = 0x01

	cmdConnect      = 0x01
	cmdUDPAssociate = 0x03

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// handshakeTimeout bounds a SOCKS negotiation when the caller's context has
// no earlier deadline: a proxy that accepts TCP and then says nothing must
// not hang a rendezvous forever.
const handshakeTimeout = 30 * time.Second

// Errors returned by this package.
var (
	// ErrUnsupportedScheme is returned by [ParseURL] for proxy URLs other
	// than socks5.
	ErrUnsupportedScheme = errors.New("socksnet: only socks5 proxies are supported (WebRTC needs UDP ASSOCIATE)")
	// ErrNotSupported is returned for operations that cannot be done
	// through a SOCKS5 proxy (listening for TCP, connected UDP).
	ErrNotSupported = errors.New("socksnet: operation not supported through a SOCKS5 proxy")
)

// ReplyError is a SOCKS5 reply with a code other than "succeeded".
type ReplyError struct {
	Command byte
	Code    byte
}

func (e *ReplyError) Error() string {
	cmd := "CONNECT"
	if e.Command == cmdUDPAssociate {
		cmd = "UDP ASSOCIATE"
	}
	return fmt.Sprintf("socksnet: %s refused: %s", cmd, replyText(e.Code))
}

// replyText names the reply codes of RFC 1928 §6.
func replyText(code byte) string {
	switch code {
	case 1:
		return "general SOCKS server failure"
	case 2:
		return "connection not allowed by ruleset"
	case 3:
		return "network unreachable"
	case 4:
		return "host unreachable"
	case 5:
		return "connection refused"
	case 6:
		return "TTL expired"
	case 7:
		return "command not supported"
	case 8:
		return "address type not supported"
	}
	return fmt.Sprintf("unknown reply code %d", code)
}

// DialFunc opens the TCP connection to the SOCKS server.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Config says how to reach the SOCKS5 server.
type Config struct {
	// Addr is the server's host:port.
	Addr string
	// Username and Password are sent with RFC 1929 authentication when
	// Username is not empty. Each is at most 255 bytes.
	Username, Password string
	// Dial opens the TCP connection to the server; nil uses a net.Dialer.
	Dial DialFunc
}

// ParseURL turns a proxy URL of the form socks5://[user[:pass]@]host:port
// (tor's TOR_PT_PROXY) into a Config. Other schemes give
// [ErrUnsupportedScheme].
func ParseURL(u *url.URL) (Config, error) {
	if u == nil {
		return Config{}, errors.New("socksnet: no proxy URL")
	}
	if u.Scheme != "socks5" {
		return Config{}, fmt.Errorf("%w: got %q", ErrUnsupportedScheme, u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return Config{}, fmt.Errorf("socksnet: proxy URL needs host:port, got %q", u.Host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return Config{}, fmt.Errorf("socksnet: proxy URL has a bad port %q", port)
	}
	cfg := Config{Addr: u.Host}
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	if err := cfg.check(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c *Config) check() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("socksnet: server address: %w", err)
	}
	if len(c.Username) > 255 || len(c.Password) > 255 {
		return errors.New("socksnet: username and password are limited to 255 bytes each")
	}
	if c.Username == "" && c.Password != "" {
		return errors.New("socksnet: a password needs a username")
	}
	return nil
}

// dialServer opens the TCP connection to the SOCKS server.
func (c *Config) dialServer(ctx context.Context) (net.Conn, error) {
	dial := c.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	// Callers such as pion's ListenUDP pass no deadline; without one a
	// proxy that never answers the connect would hold them for the
	// system's connect timeout (minutes).
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, handshakeTimeout)
		defer cancel()
	}
	conn, err := dial(ctx, "tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("socksnet: connect to proxy: %w", err)
	}
	return conn, nil
}

// withDeadline makes conn's reads and writes respect ctx (and the
// handshake timeout) until the returned function is called.
func withDeadline(ctx context.Context, conn net.Conn) (done func()) {
	dl := time.Now().Add(handshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	conn.SetDeadline(dl)
	expired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Unix(1, 0))
		close(expired)
	})
	return func() {
		// A context that ended just now has started the expiry in
		// its own goroutine; it must finish before the deadlines are
		// cleared, or it would expire the connection handed back.
		if !stop() {
			<-expired
		}
		conn.SetDeadline(time.Time{})
	}
}

// negotiate runs the method selection and, if chosen, RFC 1929
// authentication, then sends cmd for target and reads the reply's bound
// address.
func (c *Config) negotiate(conn net.Conn, cmd byte, target Addr) (Addr, error) {
	methods := []byte{version5, 1, authNone}
	if c.Username != "" {
		methods = []byte{version5, 1, authUserPass}
	}
	if _, err := conn.Write(methods); err != nil {
		return Addr{}, fmt.Errorf("socksnet: send greeting: %w", err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(conn, sel[:]); err != nil {
		return Addr{}, fmt.Errorf("socksnet: read method selection: %w", err)
	}
	if sel[0] != version5 {
		return Addr{}, fmt.Errorf("socksnet: server speaks SOCKS version %d, not 5", sel[0])
	}
	switch {
	case sel[1] == authNoAcceptable:
		return Addr{}, errors.New("socksnet: server accepts none of our authentication methods")
	case sel[1] == authUserPass && c.Username != "":
		msg := make([]byte, 0, 3+len(c.Username)+len(c.Password))
		msg = append(msg, userPassVersion, byte(len(c.Username)))
		msg = append(msg, c.Username...)
		msg = append(msg, byte(len(c.Password)))
		msg = append(msg, c.Password...)
		if _, err := conn.Write(msg); err != nil {
			return Addr{}, fmt.Errorf("socksnet: send credentials: %w", err)
		}
		var st [2]byte
		if _, err := io.ReadFull(conn, st[:]); err != nil {
			return Addr{}, fmt.Errorf("socksnet: read authentication status: %w", err)
		}
		if st[1] != 0 {
			return Addr{}, errors.New("socksnet: proxy rejected the username and password")
		}
	case sel[1] == methods[2]:
	default:
		return Addr{}, fmt.Errorf("socksnet: server chose authentication method %d, which we did not offer", sel[1])
	}
	req := []byte{version5, cmd, 0}
	req, err := target.appendTo(req)
	if err != nil {
		return Addr{}, err
	}
	if _, err := conn.Write(req); err != nil {
		return Addr{}, fmt.Errorf("socksnet: send request: %w", err)
	}
	bound, err := readReply(conn, cmd)
	if err != nil {
		return Addr{}, err
	}
	return bound, nil
}

// readReply reads a SOCKS5 reply (RFC 1928 §6) and returns BND.ADDR and
// BND.PORT.
func readReply(r io.Reader, cmd byte) (Addr, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Addr{}, fmt.Errorf("socksnet: read reply: %w", err)
	}
	if hdr[0] != version5 {
		return Addr{}, fmt.Errorf("socksnet: reply has SOCKS version %d, not 5", hdr[0])
	}
	if hdr[1] != 0 {
		return Addr{}, &ReplyError{Command: cmd, Code: hdr[1]}
	}
	a, err := readAddr(r)
	if err != nil {
		return Addr{}, fmt.Errorf("socksnet: reply: %w", err)
	}
	return a, nil
}

// Addr is a SOCKS address: an IP or a domain name, and a port.
type Addr struct {
	IP   net.IP // nil when Name is set
	Name string
	Port int
}

func (a Addr) String() string {
	if a.IP != nil {
		return net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port))
	}
	return net.JoinHostPort(a.Name, strconv.Itoa(a.Port))
}

// parseAddr splits host:port; a host that is not an IP literal is sent to
// the proxy as a domain name, so DNS happens there and not here.
func parseAddr(hostport string) (Addr, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return Addr{}, fmt.Errorf("socksnet: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return Addr{}, fmt.Errorf("socksnet: bad port in %q", hostport)
	}
	if ip := net.ParseIP(host); ip != nil {
		return Addr{IP: ip, Port: p}, nil
	}
	if host == "" || len(host) > 255 {
		return Addr{}, fmt.Errorf("socksnet: bad host name in %q", hostport)
	}
	return Addr{Name: host, Port: p}, nil
}

// appendTo appends ATYP, DST.ADDR and DST.PORT.
func (a Addr) appendTo(b []byte) ([]byte, error) {
	switch {
	case a.IP.To4() != nil:
		b = append(b, atypIPv4)
		b = append(b, a.IP.To4()...)
	case a.IP != nil:
		if len(a.IP) != net.IPv6len {
			return nil, fmt.Errorf("socksnet: bad IP address %v", a.IP)
		}
		b = append(b, atypIPv6)
		b = append(b, a.IP...)
	default:
		if a.Name == "" || len(a.Name) > 255 {
			return nil, fmt.Errorf("socksnet: bad host name %q", a.Name)
		}
		b = append(b, atypDomain, byte(len(a.Name)))
		b = append(b, a.Name...)
	}
	return binary.BigEndian.AppendUint16(b, uint16(a.Port)), nil
}

// readAddr reads ATYP, ADDR and PORT from a stream.
func readAddr(r io.Reader) (Addr, error) {
	var atyp [1]byte
	if _, err := io.ReadFull(r, atyp[:]); err != nil {
		return Addr{}, err
	}
	var a Addr
	switch atyp[0] {
	case atypIPv4, atypIPv6:
		ip := make(net.IP, net.IPv4len)
		if atyp[0] == atypIPv6 {
			ip = make(net.IP, net.IPv6len)
		}
		if _, err := io.ReadFull(r, ip); err != nil {
			return Addr{}, err
		}
		a.IP = ip
	case atypDomain:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return Addr{}, err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(r, name); err != nil {
			return Addr{}, err
		}
		if len(name) == 0 {
			return Addr{}, errors.New("empty domain name")
		}
		a.Name = string(name)
	default:
		return Addr{}, fmt.Errorf("unknown address type %d", atyp[0])
	}
	var port [2]byte
	if _, err := io.ReadFull(r, port[:]); err != nil {
		return Addr{}, err
	}
	a.Port = int(binary.BigEndian.Uint16(port[:]))
	return a, nil
}
