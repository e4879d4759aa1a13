//go:build linux

package webrtcapi

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pion/transport/v5"
)

// receiveBuffer reads a socket's SO_RCVBUF (Linux reports twice what
// was granted: the rest is its bookkeeping allowance).
func receiveBuffer(t *testing.T, c syscall.Conn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var size int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		size, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return size
}

func TestNetGrowsReceiveBuffer(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip("no rmem_max:", err)
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	want := 2 * min(ReceiveBuffer, rmemMax)

	n, err := Net(nil)
	if err != nil {
		t.Fatal(err)
	}
	if ifs, err := n.Interfaces(); err != nil || len(ifs) == 0 {
		t.Fatalf("Interfaces: %d, %v", len(ifs), err)
	}
	c, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(interface {
		ReadFromAddrPort([]byte) (int, netip.AddrPort, error)
		WriteToAddrPort([]byte, netip.AddrPort) (int, error)
	}); !ok {
		t.Fatalf("ListenUDP returned %T, without pion's allocation-free AddrPortReaderWriter", c)
	}
	if got := receiveBuffer(t, c.(syscall.Conn)); got != want {
		t.Errorf("SO_RCVBUF %d, want %d (rmem_max %d)", got, want, rmemMax)
	}

	pc, err := n.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if got := receiveBuffer(t, pc.(syscall.Conn)); got != want {
		t.Errorf("ListenPacket: SO_RCVBUF %d, want %d", got, want)
	}
}

// On another network (a SOCKS relay's), the socket it returns is asked
// for the buffer and returned as it is.
func TestNetWrapsInner(t *testing.T) {
	inner := &recordingNet{}
	n, err := Net(inner)
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c != inner.conn {
		t.Errorf("ListenUDP returned %v, not the inner network's socket", c)
	}
	if inner.conn.readBuffer != ReceiveBuffer {
		t.Errorf("SetReadBuffer(%d), want %d", inner.conn.readBuffer, ReceiveBuffer)
	}
}

type recordingNet struct {
	transport.Net // nil: only ListenUDP is used
	conn          *recordingConn
}

func (n *recordingNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	n.conn = &recordingConn{UDPConn: c}
	return n.conn, nil
}

type recordingConn struct {
	transport.UDPConn
	readBuffer int
}

func (c *recordingConn) SetReadBuffer(size int) error {
	c.readBuffer = size
	return nil
}
