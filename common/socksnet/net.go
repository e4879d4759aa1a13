package socksnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/pion/transport/v5"
)

// Net reaches the network through one SOCKS5 server. It implements pion's
// transport.Net: UDP sockets are UDP associations, TCP dials are CONNECTs,
// and the only "interface" is the proxy's address, so ICE gathers no host
// candidate for the machine's own addresses. It is safe for concurrent use.
type Net struct {
	cfg   Config
	names nameTable // placeholders for UDP destination host names

	ifaceOnce sync.Once
	iface     *transport.Interface
	ifaceErr  error
}

var _ transport.Net = (*Net)(nil)

// New returns a Net for the SOCKS5 server described by cfg.
func New(cfg Config) (*Net, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Net{cfg: cfg}, nil
}

// Addr returns the SOCKS server's address.
func (n *Net) Addr() string { return n.cfg.Addr }

// DialContext opens a TCP stream to addr through the proxy (CONNECT). A
// host name in addr is resolved by the proxy, so no DNS query leaves this
// machine. Its signature fits http.Transport.DialContext.
func (n *Net) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("socksnet: dial %s: %w", network, ErrNotSupported)
	}
	target, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	conn, err := n.cfg.dialServer(ctx)
	if err != nil {
		return nil, err
	}
	done := withDeadline(ctx, conn)
	_, err = n.cfg.negotiate(conn, cmdConnect, target)
	done()
	if err != nil {
		conn.Close()
		return nil, ctxError(ctx, "connect to "+addr, err)
	}
	return conn, nil
}

// ListenUDPContext opens a UDP association: a socket whose datagrams the
// proxy relays to and from any destination.
func (n *Net) ListenUDPContext(ctx context.Context) (*UDPConn, error) {
	ctrl, err := n.cfg.dialServer(ctx)
	if err != nil {
		return nil, err
	}
	done := withDeadline(ctx, ctrl)
	// We cannot know the address our datagrams will come from (there may
	// be a NAT between us and the proxy), so DST.ADDR is all zeros, as
	// RFC 1928 §7 says.
	bound, err := n.cfg.negotiate(ctrl, cmdUDPAssociate, Addr{IP: net.IPv4zero, Port: 0})
	done()
	if err != nil {
		ctrl.Close()
		return nil, ctxError(ctx, "udp associate", err)
	}
	relay, err := n.relayAddr(ctx, ctrl, bound)
	if err != nil {
		ctrl.Close()
		return nil, err
	}
	c, err := newUDPConn(ctrl, relay, &n.names)
	if err != nil {
		// The association is useless without its socket; holding the
		// control connection would keep it open on the proxy for good.
		ctrl.Close()
		return nil, err
	}
	return c, nil
}

// ctxError reports a handshake that failed because ctx ended as ctx's
// error (the connection deadline may fire a moment before ctx does).
func ctxError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("socksnet: %s: %w", op, ctx.Err())
	}
	var ne net.Error
	if d, ok := ctx.Deadline(); ok && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(d) {
		return fmt.Errorf("socksnet: %s: %w", op, context.DeadlineExceeded)
	}
	return err
}

// relayAddr is where datagrams go: BND.ADDR:BND.PORT, except that a server
// answering with the unspecified address means "the address you reached
// me at".
func (n *Net) relayAddr(ctx context.Context, ctrl net.Conn, bound Addr) (*net.UDPAddr, error) {
	if bound.Port == 0 {
		return nil, fmt.Errorf("socksnet: udp associate: server gave relay port 0")
	}
	if bound.IP != nil && !bound.IP.IsUnspecified() {
		return &net.UDPAddr{IP: bound.IP, Port: bound.Port}, nil
	}
	if bound.Name != "" {
		ips, err := net.DefaultResolver.LookupIP(ctx, "ip", bound.Name)
		if err != nil || len(ips) == 0 {
			return nil, fmt.Errorf("socksnet: udp associate: resolve relay %q: %v", bound.Name, err)
		}
		return &net.UDPAddr{IP: ips[0], Port: bound.Port}, nil
	}
	if ta, ok := ctrl.RemoteAddr().(*net.TCPAddr); ok {
		return &net.UDPAddr{IP: ta.IP, Port: bound.Port, Zone: ta.Zone}, nil
	}
	return nil, fmt.Errorf("socksnet: udp associate: cannot tell the relay's address")
}

// ListenUDP implements transport.Net. The local address is ignored: the
// proxy chooses the relay port.
func (n *Net) ListenUDP(network string, _ *net.UDPAddr) (transport.UDPConn, error) {
	if err := checkUDP(network); err != nil {
		return nil, err
	}
	c, err := n.ListenUDPContext(context.Background())
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ListenPacket implements transport.Net for UDP networks.
func (n *Net) ListenPacket(network, _ string) (net.PacketConn, error) {
	if err := checkUDP(network); err != nil {
		return nil, err
	}
	c, err := n.ListenUDPContext(context.Background())
	if err != nil {
		return nil, err
	}
	return c, nil
}

func checkUDP(network string) error {
	switch network {
	case "udp", "udp4", "udp6":
		return nil
	}
	return fmt.Errorf("socksnet: listen %s: %w", network, ErrNotSupported)
}

// ListenTCP implements transport.Net; a SOCKS5 client cannot accept TCP
// connections from arbitrary peers.
func (n *Net) ListenTCP(network string, _ *net.TCPAddr) (transport.TCPListener, error) {
	return nil, fmt.Errorf("socksnet: listen %s: %w", network, ErrNotSupported)
}

// Dial implements transport.Net for TCP networks.
func (n *Net) Dial(network, address string) (net.Conn, error) {
	return n.DialContext(context.Background(), network, address)
}

// DialUDP implements transport.Net. Connected UDP sockets (used by pion
// only for TURN over UDP, which the client does not use) are not offered.
func (n *Net) DialUDP(network string, _, _ *net.UDPAddr) (transport.UDPConn, error) {
	return nil, fmt.Errorf("socksnet: dial %s: %w", network, ErrNotSupported)
}

// DialTCP implements transport.Net; pion uses it only for ICE-TCP, which
// the client does not use.
func (n *Net) DialTCP(network string, _, _ *net.TCPAddr) (transport.TCPConn, error) {
	return nil, fmt.Errorf("socksnet: dial %s: %w", network, ErrNotSupported)
}

// ResolveIPAddr implements transport.Net. pion does not use it on the
// client's paths; names are looked up locally.
func (n *Net) ResolveIPAddr(network, address string) (*net.IPAddr, error) {
	return net.ResolveIPAddr(network, address)
}

// ResolveUDPAddr implements transport.Net. An IP literal is returned as
// is. A host name is not looked up here (that DNS query would go around
// the proxy): it gets a placeholder address, and datagrams to it carry the
// name for the proxy to resolve (see names.go). IPv6 ("udp6") needs IP
// literals.
func (n *Net) ResolveUDPAddr(network, address string) (*net.UDPAddr, error) {
	if err := checkUDP(network); err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("socksnet: resolve %q: %w", address, err)
	}
	if ip := net.ParseIP(host); ip != nil {
		return net.ResolveUDPAddr(network, address)
	}
	p, err := net.LookupPort("udp", port)
	if err != nil {
		return nil, fmt.Errorf("socksnet: resolve %q: %w", address, err)
	}
	if network == "udp6" {
		return nil, fmt.Errorf("socksnet: resolve %q: host names are only relayed over IPv4 here", address)
	}
	if host == "" || len(host) > 255 {
		return nil, fmt.Errorf("socksnet: resolve %q: bad host name", address)
	}
	ip, err := n.names.placeholder(host)
	if err != nil {
		return nil, err
	}
	return &net.UDPAddr{IP: ip, Port: p}, nil
}

// ResolveTCPAddr implements transport.Net (for ICE-TCP, which the client
// does not use); names are looked up locally. DialContext passes names to
// the proxy.
func (n *Net) ResolveTCPAddr(network, address string) (*net.TCPAddr, error) {
	return net.ResolveTCPAddr(network, address)
}

// ifaceName names the one interface a Net reports.
const ifaceName = "socks5"

// proxyInterface is the single interface: the proxy's address. A host
// candidate on it names the relay (its port is the association's), never
// an address of this machine.
func (n *Net) proxyInterface() (*transport.Interface, error) {
	n.ifaceOnce.Do(func() {
		host, _, err := net.SplitHostPort(n.cfg.Addr)
		if err != nil {
			n.ifaceErr = fmt.Errorf("socksnet: %w", err)
			return
		}
		ip := net.ParseIP(host)
		if ip == nil {
			ips, err := net.DefaultResolver.LookupIP(context.Background(), "ip", host)
			if err != nil || len(ips) == 0 {
				n.ifaceErr = fmt.Errorf("socksnet: resolve proxy %q: %v", host, err)
				return
			}
			ip = ips[0]
		}
		flags := net.FlagUp
		if ip.IsLoopback() {
			flags |= net.FlagLoopback
		}
		ifc := transport.NewInterface(net.Interface{Index: 1, MTU: 1500, Name: ifaceName, Flags: flags})
		bits := 8 * len(ip)
		if ip4 := ip.To4(); ip4 != nil {
			ip, bits = ip4, 32
		}
		ifc.AddAddress(&net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
		n.iface = ifc
	})
	return n.iface, n.ifaceErr
}

// Interfaces implements transport.Net.
func (n *Net) Interfaces() ([]*transport.Interface, error) {
	ifc, err := n.proxyInterface()
	if err != nil {
		return nil, err
	}
	return []*transport.Interface{ifc}, nil
}

// InterfaceByIndex implements transport.Net.
func (n *Net) InterfaceByIndex(index int) (*transport.Interface, error) {
	ifc, err := n.proxyInterface()
	if err != nil {
		return nil, err
	}
	if ifc.Index != index {
		return nil, transport.ErrInterfaceNotFound
	}
	return ifc, nil
}

// InterfaceByName implements transport.Net.
func (n *Net) InterfaceByName(name string) (*transport.Interface, error) {
	ifc, err := n.proxyInterface()
	if err != nil {
		return nil, err
	}
	if ifc.Name != name {
		return nil, transport.ErrInterfaceNotFound
	}
	return ifc, nil
}

// CreateDialer implements transport.Net: TCP dials through the proxy,
// bounded by d's timeout.
func (n *Net) CreateDialer(d *net.Dialer) transport.Dialer {
	return dialer{n: n, d: d}
}

type dialer struct {
	n *Net
	d *net.Dialer
}

func (d dialer) Dial(network, address string) (net.Conn, error) {
	ctx := context.Background()
	if d.d != nil && d.d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.d.Timeout)
		defer cancel()
	}
	return d.n.DialContext(ctx, network, address)
}

// CreateListenConfig implements transport.Net: packet listeners are UDP
// associations; stream listeners are not supported.
func (n *Net) CreateListenConfig(*net.ListenConfig) transport.ListenConfig {
	return listenConfig{n: n}
}

type listenConfig struct{ n *Net }

func (l listenConfig) Listen(_ context.Context, network, _ string) (net.Listener, error) {
	return nil, fmt.Errorf("socksnet: listen %s: %w", network, ErrNotSupported)
}

func (l listenConfig) ListenPacket(ctx context.Context, network, _ string) (net.PacketConn, error) {
	if err := checkUDP(network); err != nil {
		return nil, err
	}
	c, err := l.n.ListenUDPContext(ctx)
	if err != nil {
		return nil, err
	}
	return c, nil
}
