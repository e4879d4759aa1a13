//go:build !linux && !js

package webrtcapi

import (
	"net"

	"github.com/pion/transport/v5"
)

// newBatchConn returns c: batched reads are implemented for Linux only,
// and pion reads a plain *net.UDPConn without allocating.
func newBatchConn(c *net.UDPConn) transport.UDPConn { return c }
