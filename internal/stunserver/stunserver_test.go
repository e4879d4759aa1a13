package stunserver

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func binding(t *testing.T, c *net.UDPConn, to netip.AddrPort, change byte) (*stun.Message, netip.AddrPort) {
	t.Helper()
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	if change != 0 {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, change}})
	}
	req := stun.MustBuild(setters...)
	if _, err := c.WriteToUDPAddrPort(req.Raw, to); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp := &stun.Message{Raw: buf[:n]}
	if err := resp.Decode(); err != nil {
		t.Fatalf("decode response: %v", err)
	}
	if resp.TransactionID != req.TransactionID {
		t.Fatal("transaction ID mismatch")
	}
	return resp, from
}

func TestRFC5780(t *testing.T) {
	s, err := Listen("127.0.0.1", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "stun:127.0.0.1:") {
		t.Fatalf("URL = %q", s.URL())
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	self := c.LocalAddr().(*net.UDPAddr).AddrPort()
	p, o := s.Addr(), s.OtherAddr()
	pa := netip.AddrPortFrom(p.Addr(), o.Port())
	ap := netip.AddrPortFrom(o.Addr(), p.Port())
	for _, tc := range []struct {
		name       string
		to         netip.AddrPort
		change     byte
		wantOrigin netip.AddrPort
		wantOther  netip.AddrPort
	}{
		{"plain", p, 0, p, o},
		{"change port", p, changePort, pa, o},
		{"change IP", p, changeIP, ap, o},
		{"change both", p, changeIP | changePort, o, o},
		{"to other address", o, 0, o, p},
		{"to other, change both", o, changeIP | changePort, p, p},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, from := binding(t, c, tc.to, tc.change)
			if resp.Type != stun.BindingSuccess {
				t.Fatalf("type %v", resp.Type)
			}
			if from != tc.wantOrigin {
				t.Errorf("response came from %v, want %v", from, tc.wantOrigin)
			}
			var xor stun.XORMappedAddress
			var mapped stun.MappedAddress
			var origin stun.ResponseOrigin
			var other stun.OtherAddress
			for _, g := range []stun.Getter{&xor, &mapped, &origin, &other} {
				if err := g.GetFrom(resp); err != nil {
					t.Fatalf("%T: %v", g, err)
				}
			}
			if err := stun.Fingerprint.Check(resp); err != nil {
				t.Errorf("fingerprint: %v", err)
			}
			if xor.String() != self.String() || mapped.String() != self.String() {
				t.Errorf("mapped %v / %v, want %v", xor, mapped, self)
			}
			if origin.String() != tc.wantOrigin.String() {
				t.Errorf("RESPONSE-ORIGIN %v, want %v", origin, tc.wantOrigin)
			}
			if other.String() != tc.wantOther.String() {
				t.Errorf("OTHER-ADDRESS %v, want %v", other, tc.wantOther)
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNoAlternate(t *testing.T) {
	s, err := Listen("127.0.0.1", "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, _ := binding(t, c, s.Addr(), 0)
	if resp.Type != stun.BindingSuccess {
		t.Fatalf("type %v", resp.Type)
	}
	if _, err := resp.Get(stun.AttrOtherAddress); err == nil {
		t.Error("OTHER-ADDRESS present without an alternate IP")
	}
	resp, _ = binding(t, c, s.Addr(), changeIP)
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(resp); err != nil || code.Code != stun.CodeUnknownAttribute {
		t.Errorf("CHANGE-REQUEST without alternate: got %v (%v), want 420", code, err)
	}
}

func TestListenErrors(t *testing.T) {
	for _, tc := range []struct{ p, a string }{
		{"", ""},
		{"not-an-ip", ""},
		{"127.0.0.1", "bogus"},
		{"127.0.0.1", "127.0.0.1"},
		{"127.0.0.1", "::1"},
		{"192.0.2.1", ""}, // TEST-NET: not a local address, bind fails
	} {
		if s, err := Listen(tc.p, tc.a); err == nil {
			s.Close()
			t.Errorf("Listen(%q, %q) succeeded", tc.p, tc.a)
		}
	}
}

// FuzzRespond feeds arbitrary datagrams to the request handler: it must
// never panic, and anything it sends must be a well-formed STUN message with
// the request's transaction ID.
func FuzzRespond(f *testing.F) {
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest,
		stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}}).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest,
		stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{6}}).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingSuccess).Raw)
	f.Add([]byte("garbage"))
	s := &Server{}
	for i := range s.addrs {
		s.addrs[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i/2)}), uint16(3478+i%2))
		s.conns[i] = &net.UDPConn{} // never used for I/O by respond
	}
	from := netip.MustParseAddrPort("127.0.0.9:5555")
	f.Fuzz(func(t *testing.T, b []byte) {
		out, resp, ok := s.respond(0, b, from)
		if !ok {
			return
		}
		if out < 0 || out > 3 {
			t.Fatalf("socket index %d", out)
		}
		m := &stun.Message{Raw: resp}
		if err := m.Decode(); err != nil {
			t.Fatalf("response does not decode: %v", err)
		}
	})
}
