//go:build !linux

package rawsock

import "net"

// Wrap returns c: the direct calls are implemented for Linux only.
func Wrap(c net.Conn) net.Conn { return c }
