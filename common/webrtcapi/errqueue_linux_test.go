package webrtcapi

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func sockaddr4(a string, port uint16) []byte {
	b := make([]byte, unix.SizeofSockaddrInet4)
	binary.NativeEndian.PutUint16(b, unix.AF_INET)
	binary.BigEndian.PutUint16(b[2:], port)
	ip := netip.MustParseAddr(a).As4()
	copy(b[4:], ip[:])
	return b
}

func sockaddr6(a string, port uint16) []byte {
	b := make([]byte, unix.SizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], port)
	ip := netip.MustParseAddr(a).As16()
	copy(b[8:], ip[:])
	return b
}

// recvErrCmsg builds a control message holding a sock_extended_err.
func recvErrCmsg(level, typ int32, origin, icmpType, icmpCode byte) []byte {
	b := make([]byte, unix.CmsgSpace(sockExtendedErrSize+unix.SizeofSockaddrInet6))
	var h unix.Cmsghdr
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(sockExtendedErrSize + unix.SizeofSockaddrInet6))
	copy(b, (*[unix.SizeofCmsghdr]byte)(unsafe.Pointer(&h))[:])
	ee := b[unix.CmsgLen(0):]
	binary.NativeEndian.PutUint32(ee, uint32(unix.ECONNREFUSED))
	ee[4], ee[5], ee[6] = origin, icmpType, icmpCode
	return b
}

func TestDecodeUnreachable(t *testing.T) {
	v4, v6 := sockaddr4("192.0.2.7", 3478), sockaddr6("2001:db8::7", 443)
	mapped := sockaddr6("::ffff:192.0.2.7", 3478)
	icmp := func(typ, code byte) []byte {
		return recvErrCmsg(unix.SOL_IP, unix.IP_RECVERR, unix.SO_EE_ORIGIN_ICMP, typ, code)
	}
	icmp6 := func(typ, code byte) []byte {
		return recvErrCmsg(unix.SOL_IPV6, unix.IPV6_RECVERR, unix.SO_EE_ORIGIN_ICMP6, typ, code)
	}
	other := make([]byte, unix.CmsgSpace(4)) // an unrelated control message first
	(*unix.Cmsghdr)(unsafe.Pointer(&other[0])).Level = unix.SOL_IP
	(*unix.Cmsghdr)(unsafe.Pointer(&other[0])).Type = unix.IP_TTL
	(*unix.Cmsghdr)(unsafe.Pointer(&other[0])).SetLen(unix.CmsgLen(4))
	short := icmp(3, 3)
	(*unix.Cmsghdr)(unsafe.Pointer(&short[0])).SetLen(unix.CmsgLen(8))
	long := icmp(3, 3)
	(*unix.Cmsghdr)(unsafe.Pointer(&long[0])).SetLen(len(long) + 1)
	tests := []struct {
		name      string
		addr, oob []byte
		want      string // "" for ignored
		wantAddr  string
	}{
		{"v4 port", v4, icmp(3, 3), "port unreachable", "192.0.2.7:3478"},
		{"v4 host", v4, icmp(3, 1), "host unreachable", "192.0.2.7:3478"},
		{"v4 net", v4, icmp(3, 0), "network unreachable", "192.0.2.7:3478"},
		{"v4 fragmentation needed", v4, icmp(3, 4), "", ""},
		{"v4 admin prohibited", v4, icmp(3, 13), "", ""},
		{"v4 time exceeded", v4, icmp(11, 0), "", ""},
		{"v6 port", v6, icmp6(1, 4), "port unreachable", "[2001:db8::7]:443"},
		{"v6 address", v6, icmp6(1, 3), "host unreachable", "[2001:db8::7]:443"},
		{"v6 no route", v6, icmp6(1, 0), "network unreachable", "[2001:db8::7]:443"},
		{"v6 packet too big", v6, icmp6(2, 0), "", ""},
		{"v6 socket, ICMPv4 error", mapped, recvErrCmsg(unix.SOL_IPV6, unix.IPV6_RECVERR, unix.SO_EE_ORIGIN_ICMP, 3, 3), "port unreachable", "[::ffff:192.0.2.7]:3478"},
		{"v6 type with v4 origin", v6, recvErrCmsg(unix.SOL_IPV6, unix.IPV6_RECVERR, unix.SO_EE_ORIGIN_ICMP, 1, 4), "", ""},
		{"local error", v4, recvErrCmsg(unix.SOL_IP, unix.IP_RECVERR, unix.SO_EE_ORIGIN_LOCAL, 3, 3), "", ""},
		{"after another cmsg", v4, append(other, icmp(3, 3)...), "port unreachable", "192.0.2.7:3478"},
		{"no cmsg", v4, nil, "", ""},
		{"only another cmsg", v4, other, "", ""},
		{"cmsg too short for the error", v4, short, "", ""},
		{"cmsg longer than the buffer", v4, long, "", ""},
		{"truncated header", v4, icmp(3, 3)[:unix.SizeofCmsghdr-1], "", ""},
		{"no address", nil, icmp(3, 3), "", ""},
		{"short v4 address", v4[:6], icmp(3, 3), "", ""},
		{"short v6 address", v6[:20], icmp6(1, 4), "", ""},
		{"unknown family", append([]byte{1, 0}, v4[2:]...), icmp(3, 3), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			to, reason, ok := decodeUnreachable(tc.addr, tc.oob)
			if ok != (tc.want != "") || reason != tc.want {
				t.Fatalf("decodeUnreachable = %v, %q, %v; want %q", to, reason, ok, tc.want)
			}
			if ok && to.String() != tc.wantAddr {
				t.Fatalf("address %v, want %s", to, tc.wantAddr)
			}
		})
	}
}

func FuzzDecodeUnreachable(f *testing.F) {
	f.Add(sockaddr4("192.0.2.7", 1), recvErrCmsg(unix.SOL_IP, unix.IP_RECVERR, unix.SO_EE_ORIGIN_ICMP, 3, 3))
	f.Add(sockaddr6("2001:db8::1", 2), recvErrCmsg(unix.SOL_IPV6, unix.IPV6_RECVERR, unix.SO_EE_ORIGIN_ICMP6, 1, 4))
	f.Fuzz(func(t *testing.T, addr, oob []byte) {
		to, reason, ok := decodeUnreachable(addr, oob)
		if ok != (reason != "") || ok != to.IsValid() {
			t.Fatalf("inconsistent result %v, %q, %v", to, reason, ok)
		}
	})
}

// TestReportUnreachable: a socket reporting ICMP errors that sends to a
// closed port learns of it within a second, while its traffic with a live
// peer goes on without an error and its error queue is left empty.
func TestReportUnreachable(t *testing.T) {
	t.Run("IPv4", func(t *testing.T) { testReportUnreachable(t, "udp4", net.IPv4(127, 0, 0, 1)) })
	t.Run("IPv6", func(t *testing.T) {
		if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
			t.Skip("no IPv6 loopback:", err)
		} else {
			c.Close()
		}
		testReportUnreachable(t, "udp6", net.IPv6loopback)
	})
}

func testReportUnreachable(t *testing.T, network string, loopback net.IP) {
	dead, err := net.ListenUDP(network, &net.UDPAddr{IP: loopback})
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().(*net.UDPAddr).AddrPort()
	dead.Close()
	live, err := net.ListenUDP(network, &net.UDPAddr{IP: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	liveAddr := live.LocalAddr().(*net.UDPAddr).AddrPort()

	var mu sync.Mutex
	var reports []string
	reported := make(chan struct{}, 100)
	n, err := Net(nil, ReportUnreachable(func(to netip.AddrPort, reason string) {
		mu.Lock()
		reports = append(reports, to.String()+" "+reason)
		mu.Unlock()
		reported <- struct{}{}
	}))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := n.ListenUDP(network, &net.UDPAddr{IP: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bc, ok := conn.(*batchConn)
	if !ok || bc.errq == nil {
		t.Fatalf("socket is a %T without error reporting", conn)
	}
	// The live peer echoes.
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := live.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			live.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	msg := []byte("hello")
	echoes := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		for range 20 {
			n, from, err := bc.ReadFromAddrPort(buf)
			if err != nil {
				echoes <- err
				return
			}
			if from != liveAddr || string(buf[:n]) != "hello" {
				t.Errorf("read %q from %v", buf[:n], from)
			}
		}
		echoes <- nil
	}()
	start := time.Now()
	for i := range 20 {
		// Each dead send poisons the socket's next operation, whichever
		// it is.
		if _, err := bc.WriteToAddrPort(msg, deadAddr); err != nil {
			t.Fatalf("write %d to the closed port: %v", i, err)
		}
		time.Sleep(time.Millisecond)
		if _, err := bc.WriteToAddrPort(msg, liveAddr); err != nil {
			t.Fatalf("write %d to the live port: %v", i, err)
		}
	}
	select {
	case <-reported:
		if d := time.Since(start); d > time.Second {
			t.Errorf("first report after %v", d)
		}
	case <-time.After(time.Second):
		t.Fatal("no report within a second")
	}
	select {
	case err := <-echoes:
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("echoes lost")
	}
	mu.Lock()
	for _, r := range reports {
		if r != deadAddr.String()+" port unreachable" {
			t.Errorf("report %q", r)
		}
	}
	mu.Unlock()
	// An error still queued comes with a pending socket error, which the
	// next send meets, draining the queue.
	time.Sleep(20 * time.Millisecond)
	if _, err := bc.WriteToAddrPort(msg, liveAddr); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	var buf [1]byte
	var queued int
	bc.raw.Control(func(fd uintptr) {
		_, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != unix.EAGAIN {
			queued++
		}
	})
	if queued != 0 {
		t.Fatal("error queue not empty")
	}
}
