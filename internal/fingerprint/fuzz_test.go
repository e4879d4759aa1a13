package fingerprint

import (
	"bytes"
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The fuzz targets decode attacker-controlled bytes (anything a capture
// holds). Properties: no panic; a decoded hello re-encodes to bytes that
// decode to the same hello; fingerprints are computable; reassembly does
// not depend on how the bytes were cut.

// goldenStream returns the captured Chromium hello (see golden_test.go),
// or nil when the file is missing.
func goldenStream() []byte {
	text, err := os.ReadFile("testdata/chromium156-tls-clienthello.hex")
	if err != nil {
		return nil
	}
	b, _ := hex.DecodeString(strings.TrimSpace(string(text)))
	return b
}

func FuzzParseClientHello(f *testing.F) {
	f.Add(marshalClientHello(chromium156()), false)
	if g := goldenStream(); len(g) > 9 {
		f.Add(g[9:], false) // after the record and handshake headers
	}
	_, first, _ := fragmentedHello(&testing.T{})
	f.Add(first[13+12:], true)
	f.Add([]byte{0xfe, 0xfd}, true)
	f.Fuzz(func(t *testing.T, body []byte, dtls bool) {
		c, err := ParseClientHello(body, dtls)
		if err != nil {
			return
		}
		again, err := ParseClientHello(marshalClientHello(c), dtls)
		if err != nil {
			t.Fatalf("re-encoded hello does not parse: %v", err)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip differs:\n%+v\n%+v", c, again)
		}
		if ja4 := c.JA4(); len(ja4) != 36 {
			t.Fatalf("JA4 %q has length %d", ja4, len(ja4))
		}
		c.JA3()
		_ = c.String()
	})
}

func FuzzParseServerHello(f *testing.F) {
	f.Add(marshalServerHello(&ServerHello{LegacyVersion: VersionTLS12, CipherSuite: 0x1301,
		Extensions: []Extension{ext(ExtSupportedVersions, 3, 4), extALPN("h2")}}), false)
	f.Add(marshalServerHello(&ServerHello{LegacyVersion: VersionDTLS12, Random: helloRetryRandom}), true)
	f.Fuzz(func(t *testing.T, body []byte, dtls bool) {
		s, err := ParseServerHello(body, dtls)
		if err != nil {
			return
		}
		again, err := ParseServerHello(marshalServerHello(s), dtls)
		if err != nil {
			t.Fatalf("re-encoded hello does not parse: %v", err)
		}
		if !reflect.DeepEqual(s, again) {
			t.Fatalf("round trip differs:\n%+v\n%+v", s, again)
		}
		_ = s.JA4S()
		_ = s.Summary().String()
		_ = s.String()
	})
}

func FuzzParseHelloVerifyRequest(f *testing.F) {
	f.Add(vec8(put16(nil, VersionDTLS10), []byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := ParseHelloVerifyRequest(body)
		if err != nil {
			return
		}
		if enc := vec8(put16(nil, h.ServerVersion), h.Cookie); !bytes.Equal(enc, body) {
			t.Fatalf("round trip: %x != %x", enc, body)
		}
	})
}

func FuzzStreamReassembler(f *testing.F) {
	ch := handshake(TypeClientHello, marshalClientHello(chromium156()))
	f.Add(append(tlsRecord(contentHandshake, VersionTLS10, ch[:300]), tlsRecord(contentHandshake, VersionTLS12, ch[300:])...), uint8(7))
	f.Add(tlsRecord(contentHandshake, VersionTLS10, []byte{1, 0, 0, 0, 2, 0, 0, 0}), uint8(1))
	f.Add(goldenStream(), uint8(200))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		var whole StreamReassembler
		want, wantErr := whole.Add(stream)
		var parts StreamReassembler
		var got []Message
		var err error
		step := int(chunk) + 1
		for i := 0; i < len(stream) && err == nil; i += step {
			var msgs []Message
			msgs, err = parts.Add(stream[i:min(i+step, len(stream))])
			got = append(got, msgs...)
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("errors differ: whole %v, in pieces %v", wantErr, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("messages differ: whole %d, in pieces %d", len(want), len(got))
		}
	})
}

func FuzzDatagramReassembler(f *testing.F) {
	_, first, second := fragmentedHello(&testing.T{})
	f.Add(first, second)
	f.Add(second, first)
	f.Add([]byte{0x2c, 1, 2}, []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var d DatagramReassembler
		ma, _ := d.Add(a)
		mb, _ := d.Add(b)
		seen := map[uint16]bool{}
		for _, m := range append(ma, mb...) {
			if seen[m.Seq] {
				t.Fatalf("message_seq %d returned twice", m.Seq)
			}
			seen[m.Seq] = true
			if len(m.Body) > MaxMessageSize {
				t.Fatalf("message of %d bytes", len(m.Body))
			}
		}
	})
}

func FuzzParseFields(f *testing.F) {
	f.Add([]byte("1700000000.5\t127.0.0.1\t\t127.0.0.2\t\t5000\t6000\t\t\t\t16fefd\t\n"))
	f.Add([]byte("1\t\t::1\t\t::1\t\t\t443\t40000\t12345\t\t16:03:01\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		packets, err := parseFields(out)
		if err != nil {
			return
		}
		for _, p := range packets {
			if len(p.Payload) == 0 || !p.Src.IsValid() || !p.Dst.IsValid() {
				t.Fatalf("bad packet %+v", p)
			}
		}
		Extract(packets)
	})
}
