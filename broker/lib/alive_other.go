//go:build !linux

package broker

import "net"

// connAlive cannot probe sockets portably; a dead proxy is then found
// only when its hold expires.
func connAlive(net.Conn) bool { return true }
