package socksnet

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
)

// Host names of UDP destinations (STUN servers in a bridge line's ice=)
// must not be looked up here: the DNS query would go around the proxy.
// SOCKS5 can carry a domain name in each datagram's header instead, but
// pion wants a net.UDPAddr for every destination. So ResolveUDPAddr hands
// out a placeholder address from 198.18.0.0/15 (reserved for benchmarks,
// never routed) for each name, a UDPConn sends datagrams for a placeholder
// with the name in the header, and replies from the address the proxy
// resolved the name to are reported as coming from the placeholder, so
// that pion's STUN client accepts them.

// placeholderBase is the first placeholder address; placeholderCount
// addresses follow.
var placeholderBase = [4]byte{198, 18, 0, 0}

const placeholderCount = 1 << 17

var errTooManyNames = errors.New("socksnet: too many distinct host names")

// nameTable maps host names to placeholder addresses and back.
type nameTable struct {
	mu     sync.Mutex
	byName map[string]uint32
	names  []string // by placeholder index
}

// placeholder returns the address standing for name.
func (t *nameTable) placeholder(name string) (net.IP, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.byName[name]
	if !ok {
		if len(t.names) >= placeholderCount {
			return nil, errTooManyNames
		}
		if t.byName == nil {
			t.byName = map[string]uint32{}
		}
		i = uint32(len(t.names))
		t.byName[name] = i
		t.names = append(t.names, name)
	}
	return indexIP(i), nil
}

func indexIP(i uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, binary.BigEndian.Uint32(placeholderBase[:])+i)
	return ip
}

// name returns the host name ip stands for, if it is a placeholder.
func (t *nameTable) name(ip net.IP) (string, bool) {
	ip4 := ip.To4()
	if ip4 == nil {
		return "", false
	}
	i := binary.BigEndian.Uint32(ip4) - binary.BigEndian.Uint32(placeholderBase[:])
	if i >= placeholderCount {
		return "", false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(i) >= len(t.names) {
		return "", false
	}
	return t.names[i], true
}

// replyMap is one association's record of the names it sent to: the first
// reply from a new address on a name's port binds that address to the
// name's placeholder, and later datagrams from exactly that address are
// reported as coming from the placeholder.
type replyMap struct {
	mu      sync.Mutex
	pending map[int]net.IP            // destination port → placeholder awaiting its first reply
	bound   map[netip.AddrPort]net.IP // a resolved server → placeholder
}

func (m *replyMap) sent(placeholder net.IP, port int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.bound {
		if p.Equal(placeholder) {
			return
		}
	}
	if m.pending == nil {
		m.pending = map[int]net.IP{}
	}
	m.pending[port] = placeholder
}

// source translates a reply's source address.
func (m *replyMap) source(src *net.UDPAddr) *net.UDPAddr {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil && m.bound == nil {
		return src
	}
	// AddrPort, unlike String, costs no allocation on this per-datagram
	// path.
	key := src.AddrPort()
	if p, ok := m.bound[key]; ok {
		return &net.UDPAddr{IP: p, Port: src.Port}
	}
	if p, ok := m.pending[src.Port]; ok {
		delete(m.pending, src.Port)
		if m.bound == nil {
			m.bound = map[netip.AddrPort]net.IP{}
		}
		m.bound[key] = p
		return &net.UDPAddr{IP: p, Port: src.Port}
	}
	return src
}
