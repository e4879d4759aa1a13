//go:build !linux && !js

package webrtcapi

import (
	"net"
	"net/netip"

	"github.com/pion/transport/v5"
)

// newBatchConn returns c: batched reads are implemented for Linux only,
// and pion reads a plain *net.UDPConn without allocating. ICMP errors are
// not reported either.
func newBatchConn(c *net.UDPConn, _ func(netip.AddrPort, string)) transport.UDPConn { return c }
