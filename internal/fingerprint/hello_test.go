package fingerprint

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseClientHello(t *testing.T) {
	good := chromium156()
	if !good.HasServerName || good.ServerName != "broker.test" {
		t.Errorf("sni = %v %q", good.HasServerName, good.ServerName)
	}
	if !slices.Equal(good.ALPN, []string{"h2", "http/1.1"}) {
		t.Errorf("alpn = %q", good.ALPN)
	}
	if !slices.Equal(good.SupportedVersions, []uint16{0xaaaa, VersionTLS13, VersionTLS12}) {
		t.Errorf("versions = %04x", good.SupportedVersions)
	}
	if !slices.Equal(good.SupportedGroups, []uint16{0x3a3a, 0x11ec, 0x001d, 0x0017, 0x0018}) {
		t.Errorf("groups = %04x", good.SupportedGroups)
	}
	if want := []KeyShare{{0x3a3a, 1}, {0x11ec, 1216}, {0x001d, 32}}; !slices.Equal(good.KeyShares, want) {
		t.Errorf("key shares = %v", good.KeyShares)
	}
	if len(good.SignatureAlgorithms) != 12 || good.SignatureAlgorithms[1] != 0x0904 {
		t.Errorf("sigalgs = %04x", good.SignatureAlgorithms)
	}
	if !strings.Contains(good.String(), `sni="broker.test"`) || !strings.Contains(good.String(), "X25519MLKEM768:1216B") {
		t.Errorf("summary lacks fields: %s", good)
	}

	base := marshalClientHello(good)
	withExt := func(e Extension) []byte {
		c := *good
		c.Extensions = []Extension{e}
		return marshalClientHello(&c)
	}
	tests := []struct {
		name    string
		body    []byte
		dtls    bool
		wantErr string // substring; empty means success
	}{
		{"complete", base, false, ""},
		{"no extensions block", base[:2+32+1+32+2+32+2], false, ""},
		{"empty", nil, false, "client_version: truncated"},
		{"short random", base[:20], false, "random: truncated"},
		{"session id cut", base[:2+32+1+10], false, "session_id: truncated"},
		{"cipher suites cut", base[:2+32+1+32+2+5], false, "cipher_suites: truncated"},
		{"compression missing", base[:2+32+1+32+2+32], false, "compression_methods: truncated"},
		{"extensions cut", base[:len(base)-1], false, "extension"},
		{"trailing byte", append(slices.Clone(base), 0), false, "trailing"},
		{"dtls cookie missing", base[:2+32+1+32], true, "cookie: truncated"},
		{"session id too long", append(append(put16(nil, VersionTLS12), make([]byte, 32)...), vec8(nil, make([]byte, 33))...), false, "exceeds 32"},
		{"odd cipher list", append(append(append(put16(nil, VersionTLS12), make([]byte, 32)...), 0), vec16(nil, []byte{1, 2, 3})...), false, "odd length"},
		{"bad sni", withExt(ext(ExtServerName, 0, 5, 0)), false, "extension 0x0000"},
		{"bad alpn", withExt(ext(ExtALPN, 0, 3, 5, 'h')), false, "extension 0x0010"},
		{"bad versions", withExt(ext(ExtSupportedVersions, 3, 3, 4, 3)), false, "extension 0x002b"},
		{"bad key share", withExt(ext(ExtKeyShare, 0, 4, 0, 0x1d, 0, 32)), false, "extension 0x0033"},
		{"sigalgs trailing", withExt(ext(ExtSignatureAlgorithms, 0, 2, 4, 3, 9)), false, "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseClientHello(tt.body, tt.dtls)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want containing %q", err, tt.wantErr)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
		})
	}
}

func TestParseDTLSClientHelloCookie(t *testing.T) {
	c := reparse(&ClientHello{DTLS: true, LegacyVersion: VersionDTLS12, Cookie: []byte{1, 2, 3, 4},
		CipherSuites: []uint16{0xc02b}, CompressionMethods: []byte{0}})
	if !slices.Equal(c.Cookie, []byte{1, 2, 3, 4}) || c.CipherSuites[0] != 0xc02b {
		t.Fatalf("cookie %x ciphers %04x", c.Cookie, c.CipherSuites)
	}
	if !strings.Contains(c.String(), "cookie=4B") {
		t.Errorf("summary: %s", c)
	}
}

func TestParseServerHello(t *testing.T) {
	retry := &ServerHello{LegacyVersion: VersionTLS12, Random: helloRetryRandom, CipherSuite: 0x1301,
		Extensions: []Extension{ext(ExtSupportedVersions, 3, 4), ext(ExtKeyShare, 0x11, 0xec)}}
	good := &ServerHello{DTLS: true, LegacyVersion: VersionDTLS12, CipherSuite: 0xc02b,
		Extensions: []Extension{ext(0xff01, 0), ext(0x0017), extALPN("webrtc")}}
	tests := []struct {
		name    string
		body    []byte
		check   func(*ServerHello) bool
		wantErr string
	}{
		{"dtls 1.2", marshalServerHello(good), func(s *ServerHello) bool {
			return s.SelectedVersion == VersionDTLS12 && s.ALPN == "webrtc" && len(s.Extensions) == 3
		}, ""},
		{"retry request", marshalServerHello(retry), func(s *ServerHello) bool {
			return s.HelloRetryRequest && s.SelectedVersion == VersionTLS13 && s.KeyShareGroup == 0x11ec
		}, ""},
		{"no extensions", marshalServerHello(&ServerHello{LegacyVersion: VersionTLS12, CipherSuite: 0x002f}), func(s *ServerHello) bool {
			return s.Extensions == nil && s.SelectedVersion == VersionTLS12
		}, ""},
		{"empty", nil, nil, "server_version: truncated"},
		{"cipher cut", marshalServerHello(good)[:2+32+1+1], nil, "cipher_suite: truncated"},
		{"compression missing", marshalServerHello(good)[:2+32+1+2], nil, "compression_method: truncated"},
		{"bad version ext", marshalServerHello(&ServerHello{Extensions: []Extension{ext(ExtSupportedVersions, 3)}}), nil, "extension 0x002b"},
		{"bad alpn", marshalServerHello(&ServerHello{Extensions: []Extension{ext(ExtALPN, 0, 2, 1, 'a', 'b')}}), nil, "extension 0x0010"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseServerHello(tt.body, true)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(s) {
				t.Fatalf("unexpected decode: %s", s)
			}
		})
	}
}

func TestParseHelloVerifyRequest(t *testing.T) {
	h, err := ParseHelloVerifyRequest(vec8(put16(nil, VersionDTLS10), []byte{9, 9, 9}))
	if err != nil || h.ServerVersion != VersionDTLS10 || len(h.Cookie) != 3 {
		t.Fatalf("got %+v, %v", h, err)
	}
	for _, bad := range [][]byte{nil, {0xfe}, {0xfe, 0xff, 4, 1}, {0xfe, 0xff, 1, 1, 1}} {
		if _, err := ParseHelloVerifyRequest(bad); err == nil {
			t.Errorf("%x: no error", bad)
		}
	}
}

func TestIsGREASE(t *testing.T) {
	n := 0
	for v := range 0x10000 {
		if IsGREASE(uint16(v)) {
			n++
			if v&0xff != 0x0a+(v>>8&0xf0) && v>>8 != v&0xff {
				t.Errorf("%04x is not GREASE", v)
			}
		}
	}
	if n != 16 || !IsGREASE(0x0a0a) || !IsGREASE(0xfafa) || IsGREASE(0x0a1a) {
		t.Fatalf("%d GREASE values", n)
	}
}
