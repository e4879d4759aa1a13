package fingerprint

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestStreamReassemblerSplits(t *testing.T) {
	ch := handshake(TypeClientHello, marshalClientHello(chromium156()))
	sh := handshake(TypeServerHello, marshalServerHello(&ServerHello{LegacyVersion: VersionTLS12, CipherSuite: 0x1301}))
	// The ClientHello spans two records; the ServerHello shares the second.
	stream := tlsRecord(contentHandshake, VersionTLS10, ch[:700])
	stream = append(stream, tlsRecord(contentHandshake, VersionTLS12, append(clone(ch[700:]), sh...))...)
	stream = append(stream, tlsRecord(contentChangeCipherSpec, VersionTLS12, []byte{1})...)
	// Encrypted bytes after ChangeCipherSpec must not be read as records.
	stream = append(stream, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)

	for _, chunk := range []int{1, 3, 7, 100, len(stream)} {
		var s StreamReassembler
		var got []Message
		for i := 0; i < len(stream); i += chunk {
			msgs, err := s.Add(stream[i:min(i+chunk, len(stream))])
			if err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
			got = append(got, msgs...)
		}
		if len(got) != 2 || got[0].Type != TypeClientHello || got[1].Type != TypeServerHello {
			t.Fatalf("chunk %d: got %d messages", chunk, len(got))
		}
		if !bytes.Equal(got[0].Body, ch[4:]) || got[0].RecordVersion != VersionTLS10 || got[1].RecordVersion != VersionTLS12 {
			t.Fatalf("chunk %d: message contents or record versions differ", chunk)
		}
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func TestStreamReassemblerErrors(t *testing.T) {
	tests := []struct {
		name, want string
		stream     []byte
	}{
		{"not TLS", "content_type", []byte("GET / HTTP/1.1\r\n")},
		{"record too long", "length", []byte{22, 3, 1, 0xff, 0xff}},
		{"message too long", "too large", tlsRecord(contentHandshake, VersionTLS10, []byte{1, 0x10, 0, 0})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s StreamReassembler
			_, err := s.Add(tt.stream)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if _, again := s.Add([]byte{22}); again == nil {
				t.Fatal("error is not sticky")
			}
		})
	}
}

// fragmentedHello returns a DTLS ClientHello split into two datagrams the
// way Chromium sends its post-quantum hello.
func fragmentedHello(t *testing.T) (body []byte, first, second []byte) {
	t.Helper()
	c := chromium156()
	c.DTLS = true
	c.LegacyVersion = VersionDTLS12
	body = marshalClientHello(c)
	cut := 900
	first = dtlsRecord(contentHandshake, VersionDTLS10, 0, 0, dtlsFragment(TypeClientHello, 0, body, 0, cut))
	second = dtlsRecord(contentHandshake, VersionDTLS10, 0, 1, dtlsFragment(TypeClientHello, 0, body, cut, len(body)-cut))
	return body, first, second
}

func TestDatagramReassembler(t *testing.T) {
	body, first, second := fragmentedHello(t)
	orders := map[string][][]byte{
		"in order":          {first, second},
		"reversed":          {second, first},
		"with retransmits":  {first, first, second, second, first},
		"overlap":           {first, dtlsRecord(contentHandshake, VersionDTLS10, 0, 2, dtlsFragment(TypeClientHello, 0, body, 800, 200)), second},
		"ACK record":        {append(dtlsRecord(26, VersionDTLS12, 0, 5, []byte{0, 0}), first...), second},
		"encrypted records": {append(dtlsRecord(contentApplicationData, VersionDTLS12, 1, 0, []byte{1, 2, 3}), first...), append(second, 0x2c, 1, 2, 3)},
	}
	for name, datagrams := range orders {
		t.Run(name, func(t *testing.T) {
			var d DatagramReassembler
			var got []Message
			for _, dg := range datagrams {
				msgs, err := d.Add(dg)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, msgs...)
			}
			if len(got) != 1 || !bytes.Equal(got[0].Body, body) || got[0].RecordVersion != VersionDTLS10 {
				t.Fatalf("got %d messages", len(got))
			}
			c, err := ParseClientHello(got[0].Body, true)
			if err != nil {
				t.Fatal(err)
			}
			if c.JA4() != "d13d1517h2_8daaf6152771_cb7bf5808d99" {
				t.Fatalf("JA4 %s", c.JA4())
			}
		})
	}
}

func TestDatagramReassemblerErrors(t *testing.T) {
	body, first, _ := fragmentedHello(t)
	tests := []struct {
		name, want string
		datagram   []byte
	}{
		{"short header", "header", []byte{22, 0xfe, 0xfd, 0}},
		{"record length", "length", first[:100]},
		{"content type", "content_type", []byte{19, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"fragment header", "fragment_length", dtlsRecord(contentHandshake, VersionDTLS12, 0, 0, []byte{1, 0, 0, 5})},
		{"fragment beyond length", "fragment_offset", dtlsRecord(contentHandshake, VersionDTLS12, 0, 0,
			append(put24(put24(put16(put24([]byte{1}, 4), 0), 2), 4), 1, 2, 3, 4))},
		{"too large", "too large", dtlsRecord(contentHandshake, VersionDTLS12, 0, 0,
			put24(put24(put16(put24([]byte{1}, 1<<20), 0), 0), 0))},
		{"inconsistent fragments", "differs", dtlsRecord(contentHandshake, VersionDTLS12, 0, 0,
			append(dtlsFragment(TypeClientHello, 0, body, 0, 10), dtlsFragment(TypeServerHello, 0, body[:20], 10, 10)...))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d DatagramReassembler
			_, err := d.Add(tt.datagram)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("too many partial messages", func(t *testing.T) {
		var d DatagramReassembler
		var err error
		for seq := range maxPartial + 1 {
			_, err = d.Add(dtlsRecord(contentHandshake, VersionDTLS12, 0, 0, dtlsFragment(TypeClientHello, uint16(seq), body, 0, 10)))
		}
		if err == nil || !strings.Contains(err.Error(), "incomplete") {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestExtract(t *testing.T) {
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	server := netip.MustParseAddrPort("127.0.0.1:443")
	udpClient := netip.MustParseAddrPort("127.0.0.1:50000")
	udpServer := netip.MustParseAddrPort("127.0.0.2:50001")
	ch := tlsRecord(contentHandshake, VersionTLS10, handshake(TypeClientHello, marshalClientHello(chromium156())))
	sh := tlsRecord(contentHandshake, VersionTLS12, handshake(TypeServerHello,
		marshalServerHello(&ServerHello{LegacyVersion: VersionTLS12, CipherSuite: 0x1301, Extensions: []Extension{ext(ExtSupportedVersions, 3, 4)}})))
	_, first, second := fragmentedHello(t)
	hvr := dtlsRecord(contentHandshake, VersionDTLS10, 0, 0, dtlsFragment(TypeHelloVerifyRequest, 0,
		vec8(put16(nil, VersionDTLS12), []byte{1, 2}), 0, 5))
	now := time.Unix(1700000000, 0)
	packets := []Packet{
		{Time: now, Src: client, Dst: server, Seq: 1000, Payload: ch[:500]},
		{Time: now, Src: client, Dst: server, Seq: 1000, Payload: ch[:500]}, // retransmission
		{Time: now, Src: client, Dst: server, Seq: 1400, Payload: ch[400:]}, // overlapping
		{Time: now, Src: server, Dst: client, Seq: 7, Payload: sh},
		{Time: now, Src: udpClient, Dst: udpServer, UDP: true, Payload: []byte{0, 1, 0, 0}}, // STUN
		{Time: now, Src: udpClient, Dst: udpServer, UDP: true, Payload: first},
		{Time: now, Src: udpClient, Dst: udpServer, UDP: true, Payload: second},
		{Time: now, Src: udpServer, Dst: udpClient, UDP: true, Payload: hvr},
		// A direction with a gap fails alone.
		{Time: now, Src: server, Dst: udpClient, Seq: 1, Payload: []byte{22}},
		{Time: now, Src: server, Dst: udpClient, Seq: 100, Payload: []byte{3}},
	}
	hellos, err := Extract(packets)
	if err == nil || !strings.Contains(err.Error(), "missing before sequence") {
		t.Errorf("error = %v, want a gap error", err)
	}
	if len(hellos) != 4 {
		t.Fatalf("got %d hellos", len(hellos))
	}
	if h := hellos[0]; h.Client == nil || h.DTLS || h.Src != client || h.Client.JA4() != "t13d1517h2_8daaf6152771_cb7bf5808d99" {
		t.Errorf("hello 0: %+v", h)
	}
	if h := hellos[1]; h.Server == nil || h.Server.SelectedVersion != VersionTLS13 || h.Server.RecordVersion != VersionTLS12 {
		t.Errorf("hello 1: %+v", h)
	}
	if h := hellos[2]; h.Client == nil || !h.DTLS || h.Client.RecordVersion != VersionDTLS10 {
		t.Errorf("hello 2: %+v", h)
	}
	if h := hellos[3]; h.Verify == nil || h.Verify.ServerVersion != VersionDTLS12 || len(h.Verify.Cookie) != 2 {
		t.Errorf("hello 3: %+v", h)
	}
	var pe *ParseError
	if errors.As(err, &pe) {
		t.Errorf("gap error should not be a parse error: %v", err)
	}
}

func TestParseFields(t *testing.T) {
	out := "1700000000.123456789\t127.0.0.1\t\t127.0.0.2\t\t5000\t6000\t\t\t\t16fefd\t\n" +
		"1700000001.5\t\t::1\t\t::1\t\t\t443\t40000\t12345\t\t16:03:01\n" +
		"1700000002\t127.0.0.1\t\t127.0.0.1\t\t\t\t443\t40000\t1\t\t\n" // no payload: dropped
	got, err := parseFields([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d packets", len(got))
	}
	if p := got[0]; !p.UDP || p.Src.String() != "127.0.0.1:5000" || p.Dst.String() != "127.0.0.2:6000" ||
		!bytes.Equal(p.Payload, []byte{0x16, 0xfe, 0xfd}) || p.Time.Nanosecond() != 123456789 {
		t.Errorf("packet 0: %+v", p)
	}
	if p := got[1]; p.UDP || p.Src.String() != "[::1]:443" || p.Seq != 12345 || !bytes.Equal(p.Payload, []byte{0x16, 3, 1}) ||
		p.Time.Nanosecond() != 500000000 {
		t.Errorf("packet 1: %+v", p)
	}
	for _, bad := range []string{"1\t2\n", "x\t127.0.0.1\t\t127.0.0.1\t\t1\t2\t\t\t\t00\t\n",
		"1\tnot-an-ip\t\t127.0.0.1\t\t1\t2\t\t\t\t00\t\n", "1\t127.0.0.1\t\t127.0.0.1\t\t1\t2\t\t\t\tzz\t\n"} {
		if _, err := parseFields([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestWriteReport(t *testing.T) {
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	server := netip.MustParseAddrPort("127.0.0.1:443")
	s, err := ParseServerHello(marshalServerHello(&ServerHello{LegacyVersion: VersionTLS12, CipherSuite: 0x1301,
		Extensions: []Extension{ext(ExtSupportedVersions, 3, 4)}}), false)
	if err != nil {
		t.Fatal(err)
	}
	hellos := []Hello{
		{Time: time.Unix(1700000000, 0), Src: client, Dst: server, Client: chromium156()},
		{Time: time.Unix(1700000000, 0), Src: server, Dst: client, Server: s},
		{Time: time.Unix(1700000000, 0), Src: server, Dst: client, DTLS: true, Verify: &HelloVerifyRequest{ServerVersion: VersionDTLS12}},
	}
	var b strings.Builder
	if err := WriteReport(&b, hellos, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"2023-11-14T22:13:20Z 127.0.0.1:40000 -> 127.0.0.1:443 TLS ClientHello\n",
		"  JA4    t13d1517h2_8daaf6152771_cb7bf5808d99\n",
		"  JA4_r  t13d1517h2_002f,",
		"127.0.0.1:443 -> 127.0.0.1:40000 TLS ServerHello\n  JA4S   t130100_1301_",
		"  server version=TLS1.3 cipher=AES128-GCM-SHA256 extensions=[supported_versions]\n",
		"DTLS HelloVerifyRequest\n  hello  DTLS HelloVerifyRequest",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
