//go:build !js

package dtlsshape

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
	"time"
)

func mustHex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRewriteHelloRecords(t *testing.T) {
	// record: type 22, version, epoch 0, seq 0, length, then a
	// handshake header whose first byte is the message type.
	hello := "16fefd" + "0000" + "000000000000" + "0004" + "01000000"
	for _, tc := range []struct{ name, in, want string }{
		{"client hello", hello, "16feff" + hello[6:]},
		{"two records, both hellos", hello + hello, "16feff" + hello[6:] + "16feff" + hello[6:]},
		{"server hello untouched", "16fefd0000000000000000000402000000", "16fefd0000000000000000000402000000"},
		{"epoch 1 untouched", "16fefd0001000000000000000401000000", "16fefd0001000000000000000401000000"},
		{"already 1.0", "16feff0000000000000000000401000000", "16feff0000000000000000000401000000"},
		{"truncated record", hello[:len(hello)-2], hello[:len(hello)-2]},
		{"trailing garbage", hello + "00", hello + "00"},
		{"stun", "000100002112a442" + "000000000000000000000000", "000100002112a442" + "000000000000000000000000"},
		{"application data", "17fefd0001000000000001000401020304", "17fefd0001000000000001000401020304"},
		{"empty", "", ""},
	} {
		in := mustHex(t, tc.in)
		orig := bytes.Clone(in)
		got := rewriteHelloRecords(in)
		if !bytes.Equal(got, mustHex(t, tc.want)) {
			t.Errorf("%s: got %x, want %s", tc.name, got, tc.want)
		}
		if !bytes.Equal(in, orig) {
			t.Errorf("%s: input modified", tc.name)
		}
	}
}

func FuzzRewriteHelloRecords(f *testing.F) {
	f.Add(mustHex(f, "16fefd0000000000000000000401000000"))
	f.Add(mustHex(f, "16fefd000000000000000000ff01"))
	f.Add([]byte{22})
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		out := rewriteHelloRecords(b)
		if !bytes.Equal(b, orig) {
			t.Fatal("input modified")
		}
		if len(out) != len(b) {
			t.Fatalf("length %d, want %d", len(out), len(b))
		}
		for i := range out {
			// Only version bytes of records may change.
			if out[i] != b[i] && !(out[i] == 0xff && b[i] == 0xfd) {
				t.Fatalf("byte %d changed from %#x to %#x", i, b[i], out[i])
			}
		}
	})
}

func TestWrapNetRewritesOnTheWire(t *testing.T) {
	n, err := WrapNet(nil)
	if err != nil {
		t.Fatal(err)
	}
	ifs, err := n.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Fatalf("interfaces: %v, %v", ifs, err)
	}
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	for _, listen := range []func() (net.PacketConn, error){
		func() (net.PacketConn, error) { return n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}) },
		func() (net.PacketConn, error) { return n.ListenPacket("udp4", "127.0.0.1:0") },
	} {
		c, err := listen()
		if err != nil {
			t.Fatal(err)
		}
		hello := mustHex(t, "16fefd0000000000000000000401000000")
		if _, err := c.WriteTo(hello, recv.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if w, ok := c.(interface {
			WriteToAddrPort([]byte, netip.AddrPort) (int, error)
		}); ok {
			if _, err := w.WriteToAddrPort(hello, recv.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}
	buf := make([]byte, 64)
	for i := range 3 {
		recv.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err := recv.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if got := hex.EncodeToString(buf[:k]); got != "16feff0000000000000000000401000000" {
			t.Errorf("datagram %d on the wire: %s", i, got)
		}
	}
}
