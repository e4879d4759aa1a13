package socksnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/internal/stunserver"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// echoUDP echoes datagrams back to their sender.
func echoUDP(t *testing.T) *net.UDPAddr {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			c.WriteToUDP(buf[:n], from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr)
}

// associate starts a SOCKS server and a UDP echo server on loopback and
// returns the server, a UDP association through it (closed when the test
// ends) and the echo's address.
func associate(t *testing.T) (*testenv.SOCKS5Server, *UDPConn, *net.UDPAddr) {
	t.Helper()
	srv := startServer(t, "", "")
	echo := echoUDP(t)
	n, err := New(Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := n.ListenUDPContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c, echo
}

func TestUDPAssociate(t *testing.T) {
	srv, c, echo := associate(t)
	if la := c.LocalAddr().(*net.UDPAddr); !la.IP.IsLoopback() || la.Port == 0 {
		t.Errorf("local address %v, want the relay's loopback address", la)
	}
	// Small buffers and large ones both work.
	for i, size := range []int{1, 100, 1200, 1400, 9000} {
		msg := bytes.Repeat([]byte{byte(i + 1)}, size)
		if _, err := c.WriteTo(msg, echo); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, size)
		if size > 1000 {
			buf = make([]byte, 16384)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(buf[:k], msg) {
			t.Fatalf("size %d: echo differs (%d bytes back)", size, k)
		}
		if fa := from.(*net.UDPAddr); !fa.IP.Equal(echo.IP) || fa.Port != echo.Port {
			t.Errorf("source %v, want %v", from, echo)
		}
	}
	if got := srv.UDPPackets.Load(); got != 10 {
		t.Errorf("server relayed %d datagrams, want 10", got)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("Write on an unconnected association succeeded")
	}
	c.Close()
	if _, _, err := c.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v, want net.ErrClosed", err)
	}
	c.Close() // idempotent
}

// TestAssociationEnds: when the proxy closes the control connection, the
// association's reads fail instead of hanging.
func TestAssociationEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 3+10)
		io.ReadFull(c, buf[:3])
		c.Write([]byte{5, 0})
		io.ReadFull(c, buf[:10])
		port := relay.LocalAddr().(*net.UDPAddr).Port
		// The unspecified address means "where you reached me".
		c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, byte(port >> 8), byte(port)})
	}()
	n, _ := New(Config{Addr: ln.Addr().String()})
	c, err := n.ListenUDPContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.RelayAddr().IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("relay %v, want the server's address", c.RelayAddr())
	}
	<-served
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadFrom(make([]byte, 100)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after the proxy hung up: %v, want net.ErrClosed", err)
	}
}

// TestHandshakeTimeout: a proxy that accepts and says nothing does not
// hang the caller past its context.
func TestHandshakeTimeout(t *testing.T) {
	ln := testenv.ServeTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	n, _ := New(Config{Addr: ln.Addr().String()})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := n.ListenUDPContext(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent proxy: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestParseDatagram(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		hdr  int
		src  string
		err  string
	}{
		{"ipv4", []byte{0, 0, 0, 1, 127, 0, 0, 1, 0x0d, 0x96, 'h', 'i'}, 10, "127.0.0.1:3478", ""},
		{"ipv4 empty payload", []byte{0, 0, 0, 1, 10, 1, 2, 3, 0, 80}, 10, "10.1.2.3:80", ""},
		{"ipv6", append([]byte{0, 0, 0, 4}, append(net.ParseIP("::1"), 0, 53, 'x')...), 22, "[::1]:53", ""},
		{"short", []byte{0, 0, 0}, 0, "", "shorter"},
		{"short ipv4", []byte{0, 0, 0, 1, 127, 0}, 0, "", "shorter"},
		{"reserved", []byte{1, 0, 0, 1, 127, 0, 0, 1, 0, 1}, 0, "", "reserved"},
		{"fragment", []byte{0, 0, 1, 1, 127, 0, 0, 1, 0, 1}, 0, "", "fragmented"},
		{"domain", []byte{0, 0, 0, 3, 1, 'a', 0, 1}, 0, "", "domain"},
		{"bad atyp", []byte{0, 0, 0, 9, 127, 0, 0, 1, 0, 1}, 0, "", "unknown address type"},
	}
	for _, tc := range tests {
		hdr, src, err := ParseDatagram(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || hdr != tc.hdr || src.String() != tc.src {
			t.Errorf("%s: got %d %v %v, want %d %s", tc.name, hdr, src, err, tc.hdr, tc.src)
		}
	}
}

func FuzzParseDatagram(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 127, 0, 0, 1, 0x0d, 0x96, 'h', 'i'})
	f.Add(append([]byte{0, 0, 0, 4}, append(net.ParseIP("::1"), 0, 53, 'x')...))
	f.Add([]byte{0, 0, 0, 3, 1, 'a', 0, 1})
	f.Add([]byte{0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, src, err := ParseDatagram(b)
		if err != nil {
			return
		}
		if hdr > len(b) {
			t.Fatalf("header %d longer than datagram %d", hdr, len(b))
		}
		// What parses re-encodes to a datagram that parses the same (an
		// IPv4-mapped IPv6 source comes back as IPv4).
		re, err := AppendDatagram(nil, src, b[hdr:])
		if err != nil {
			t.Fatal(err)
		}
		hdr2, src2, err := ParseDatagram(re)
		if err != nil || !src2.IP.Equal(src.IP) || src2.Port != src.Port || !bytes.Equal(re[hdr2:], b[hdr:]) {
			t.Fatalf("re-encoded %x (%v, %v), parsed from %x", re, src2, err, b)
		}
	})
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
		err  string
	}{
		{"ipv4", []byte{5, 0, 0, 1, 127, 0, 0, 1, 4, 0}, "127.0.0.1:1024", ""},
		{"domain", []byte{5, 0, 0, 3, 4, 'r', 'e', 'l', 'y', 0, 9}, "rely:9", ""},
		{"ipv6", append([]byte{5, 0, 0, 4}, append(net.ParseIP("::1"), 0, 1)...), "[::1]:1", ""},
		{"refused", []byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}, "", "connection refused"},
		{"not supported", []byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0}, "", "command not supported"},
		{"odd code", []byte{5, 99, 0}, "", "unknown reply code 99"},
		{"version 4", []byte{4, 0, 0, 1, 0, 0, 0, 0, 0, 0}, "", "version 4"},
		{"truncated", []byte{5, 0, 0, 1, 127}, "", "EOF"},
		{"empty domain", []byte{5, 0, 0, 3, 0, 0, 9}, "", "empty domain"},
		{"bad atyp", []byte{5, 0, 0, 2, 0, 0}, "", "unknown address type"},
	}
	for _, tc := range tests {
		a, err := readReply(bytes.NewReader(tc.in), cmdUDPAssociate)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || a.String() != tc.want {
			t.Errorf("%s: got %v, %v; want %s", tc.name, a, err, tc.want)
		}
	}
}

func FuzzReadReply(f *testing.F) {
	f.Add([]byte{5, 0, 0, 1, 127, 0, 0, 1, 4, 0})
	f.Add([]byte{5, 0, 0, 3, 4, 'r', 'e', 'l', 'y', 0, 9})
	f.Add([]byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := readReply(bytes.NewReader(b), cmdConnect)
		if err != nil {
			return
		}
		// A parsed address encodes to a reply that parses the same (an
		// IPv4-mapped IPv6 address comes back as IPv4).
		re, err := a.appendTo([]byte{5, 0, 0})
		if err != nil {
			t.Fatal(err)
		}
		a2, err := readReply(bytes.NewReader(re), cmdConnect)
		if err != nil || !a2.IP.Equal(a.IP) || a2.Name != a.Name || a2.Port != a.Port {
			t.Fatalf("re-encoded %x (%v, %v), parsed from %x", re, a2, err, b)
		}
	})
}

func TestAppendDatagramErrors(t *testing.T) {
	if _, err := AppendDatagram(nil, &net.UDPAddr{IP: net.IP{1, 2, 3}}, nil); err == nil {
		t.Error("3-byte IP accepted")
	}
	if _, err := AppendDatagram(nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, make([]byte, 70000)); err == nil {
		t.Error("oversized payload accepted")
	}
	b, err := AppendDatagram(nil, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 3478}, []byte("p"))
	if err != nil || fmt.Sprint(b) != fmt.Sprint([]byte{0, 0, 0, 1, 192, 0, 2, 1, 0x0d, 0x96, 'p'}) {
		t.Errorf("got %v, %v", b, err)
	}
}

// TestUDPHostNames: a UDP destination given by name is not looked up
// locally; the proxy resolves it, and replies come back from the name's
// placeholder address.
func TestUDPHostNames(t *testing.T) {
	srv := startServer(t, "", "")
	echo := echoUDP(t)
	other := echoUDP(t)
	n, _ := New(Config{Addr: srv.Addr()})
	byName := "localhost:" + strconv.Itoa(echo.Port)
	a, err := n.ResolveUDPAddr("udp4", byName)
	if err != nil {
		t.Fatal(err)
	}
	if !(&net.IPNet{IP: net.IPv4(198, 18, 0, 0), Mask: net.CIDRMask(15, 32)}).Contains(a.IP) || a.Port != echo.Port {
		t.Fatalf("placeholder %v, want 198.18.0.0/15 and port %d", a, echo.Port)
	}
	if again, _ := n.ResolveUDPAddr("udp", byName); !again.IP.Equal(a.IP) {
		t.Errorf("same name, new placeholder %v (was %v)", again, a)
	}
	if b, _ := n.ResolveUDPAddr("udp4", "stun.invalid:3478"); b == nil || b.IP.Equal(a.IP) {
		t.Errorf("another name got %v", b)
	}
	if lit, _ := n.ResolveUDPAddr("udp4", echo.String()); lit == nil || !lit.IP.Equal(echo.IP) {
		t.Errorf("IP literal resolved to %v", lit)
	}
	if _, err := n.ResolveUDPAddr("udp6", byName); err == nil {
		t.Error("udp6 name resolved")
	}

	c, err := n.ListenUDPContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for i, dst := range []*net.UDPAddr{a, other, a} {
		msg := []byte(fmt.Sprintf("datagram %d", i))
		if _, err := c.WriteTo(msg, dst); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:k]) != string(msg) {
			t.Errorf("echo %q, want %q", buf[:k], msg)
		}
		if fa := from.(*net.UDPAddr); !fa.IP.Equal(dst.IP) || fa.Port != dst.Port {
			t.Errorf("reply to %v came from %v", dst, from)
		}
	}
}

// TestNATDiscoveryByName: RFC 5780 NAT discovery through the proxy against
// a STUN server named in its URL.
func TestNATDiscoveryByName(t *testing.T) {
	srv := startServer(t, "", "")
	stun, err := stunserver.Listen("127.0.0.1", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer stun.Close()
	n, _ := New(Config{Addr: srv.Addr()})
	url := strings.Replace(stun.URL(), "127.0.0.1", "localhost", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	typ, err := nat.Discover(ctx, n, []string{url}, nil)
	if err != nil {
		t.Fatalf("discover via %s: %v", url, err)
	}
	if typ == nat.Unknown {
		t.Errorf("NAT type unknown through the proxy")
	}
	if srv.UDPPackets.Load() < 4 {
		t.Errorf("proxy relayed %d datagrams, want the STUN exchanges", srv.UDPPackets.Load())
	}
}

// TestAssociationSocketFailure: when the relay a proxy names cannot be
// reached (here a link-local IPv6 address without a zone, which connect
// refuses), the association fails and its TCP control connection is
// closed, not left open for the life of the proxy.
func TestAssociationSocketFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hungUp := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			hungUp <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 10)
		io.ReadFull(c, buf[:3])
		c.Write([]byte{5, 0})
		io.ReadFull(c, buf[:10])
		reply := []byte{5, 0, 0, 4, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x30, 0x39}
		c.Write(reply)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(buf)
		hungUp <- err
	}()
	n, _ := New(Config{Addr: ln.Addr().String()})
	if c, err := n.ListenUDPContext(context.Background()); err == nil {
		c.Close()
		t.Skip("this system can reach fe80::1 without a zone")
	}
	if err := <-hungUp; !errors.Is(err, io.EOF) {
		t.Errorf("control connection after the failed association: %v, want it closed (EOF)", err)
	}
}

// TestReadFitsCallerBuffer: a datagram whose payload fits the caller's
// buffer comes back whole, even when the payload and its SOCKS header
// together do not fit; a larger payload is cut to the buffer's length, as
// a plain UDP socket does.
func TestReadFitsCallerBuffer(t *testing.T) {
	_, c, echo := associate(t)
	for _, tc := range []struct{ payload, buf int }{
		{1500, 1500}, // fits exactly; with the 10-byte header it does not
		{1495, 1500},
		{9000, 9000},
		{2000, 1500}, // too large: the first 1500 bytes
	} {
		msg := make([]byte, tc.payload)
		for i := range msg {
			msg[i] = byte(i)
		}
		if _, err := c.WriteTo(msg, echo); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, tc.buf)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("payload %d, buffer %d: %v", tc.payload, tc.buf, err)
		}
		want := msg[:min(tc.payload, tc.buf)]
		if !bytes.Equal(buf[:k], want) {
			t.Errorf("payload %d, buffer %d: read %d bytes, want the first %d of the payload", tc.payload, tc.buf, k, len(want))
		}
	}
}
