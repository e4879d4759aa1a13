package fingerprint

import (
	"strings"
	"testing"
)

// chromium156 is a ClientHello with the shape Chromium 156 sent to a local
// server (extension order as in one captured connection; it changes per
// connection and JA4 sorts it away).
func chromium156() *ClientHello {
	exts := []Extension{
		ext(0xfafa),
		ext(0x0012),
		extKeyShares(KeyShare{0x3a3a, 1}, KeyShare{0x11ec, 1216}, KeyShare{0x001d, 32}),
		ext(0x000b, 1, 0),
		ext(0x0017),
		ext(0x002d, 1, 1),
		extList16(ExtSignatureAlgorithms, 0xcaca, 0x0904, 0x0905, 0x0906, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601),
		ext(0xff01, 0),
		extALPN("h2", "http/1.1"),
		ext(0xca34, 0, 0),
		extVersions(0xaaaa, VersionTLS13, VersionTLS12),
		extList16(ExtSupportedGroups, 0x3a3a, 0x11ec, 0x001d, 0x0017, 0x0018),
		extSNI("broker.test"),
		ext(0x44cd, 0, 3, 2, 'h', '2'),
		ext(0x001b, 2, 0, 2),
		ext(0x0023),
		ext(0xfe0d, 0),
		ext(0x0005, 1, 0, 0, 0, 0),
		ext(0x2a2a, 0),
	}
	c := &ClientHello{
		LegacyVersion: VersionTLS12,
		SessionID:     make([]byte, 32),
		CipherSuites: []uint16{0x8a8a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
			0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035},
		CompressionMethods: []byte{0},
		Extensions:         exts,
	}
	return reparse(c)
}

// reparse encodes c and decodes it again, so the decoded views
// (ALPN, versions, ...) are filled in by the parser under test.
func reparse(c *ClientHello) *ClientHello {
	got, err := ParseClientHello(marshalClientHello(c), c.DTLS)
	if err != nil {
		panic(err)
	}
	return got
}

// The expected hashes below were computed by hand from the JA4R strings
// with `printf '%s' LIST | sha256sum | cut -c1-12`; the Chrome values are
// also the ones the issue reports from FoxIO's reference tooling.
func TestJA4Vectors(t *testing.T) {
	chrome133 := chromium156()
	// HelloChrome_Auto (uTLS 1.8.2) lacks trust_anchors and the ML-DSA
	// signature algorithms.
	var exts []Extension
	for _, e := range chrome133.Extensions {
		switch e.Type {
		case 0xca34:
		case ExtSignatureAlgorithms:
			exts = append(exts, extList16(ExtSignatureAlgorithms, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601))
		default:
			exts = append(exts, e)
		}
	}
	chrome133.Extensions = exts
	chrome133 = reparse(chrome133)

	pionLike := reparse(&ClientHello{
		DTLS:               true,
		LegacyVersion:      VersionDTLS12,
		CipherSuites:       []uint16{0xc02b, 0xc02f, 0xc00a, 0xc014, 0xc0ac, 0xc0ae, 0xc009, 0xc013},
		CompressionMethods: []byte{0},
		Extensions: []Extension{
			extList16(ExtSupportedGroups, 0x001d, 0x0017, 0x0018),
			ext(0x000e, 0, 2, 0, 1, 0),
			ext(0x000b, 1, 0),
			extList16(ExtSignatureAlgorithms, 0x0403, 0x0804, 0x0401),
			ext(0xff01, 0),
			ext(0x0017),
		},
	})

	tests := []struct {
		name      string
		hello     *ClientHello
		ja4, ja4r string
	}{
		{
			name:  "chromium 156",
			hello: chromium156(),
			ja4:   "t13d1517h2_8daaf6152771_cb7bf5808d99",
			ja4r: "t13d1517h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_" +
				"0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,ca34,fe0d,ff01_" +
				"0904,0905,0906,0403,0804,0401,0503,0805,0501,0806,0601",
		},
		{
			name:  "uTLS HelloChrome_Auto",
			hello: chrome133,
			ja4:   "t13d1516h2_8daaf6152771_d8a2da3f94cd",
			ja4r: "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_" +
				"0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		},
		{
			name:  "DTLS 1.2 without supported_versions",
			hello: pionLike,
			ja4:   "dd2i080600_7723fac8848f_9c1ee68be69d",
			ja4r:  "dd2i080600_c009,c00a,c013,c014,c02b,c02f,c0ac,c0ae_000a,000b,000d,000e,0017,ff01_0403,0804,0401",
		},
		{
			name:  "no ciphers, no extensions",
			hello: reparse(&ClientHello{LegacyVersion: VersionTLS12, CompressionMethods: []byte{0}}),
			ja4:   "t12i000000_000000000000_000000000000",
			ja4r:  "t12i000000__",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.hello.JA4(); got != tt.ja4 {
				t.Errorf("JA4 = %s, want %s", got, tt.ja4)
			}
			if got := tt.hello.JA4R(); got != tt.ja4r {
				t.Errorf("JA4R = %s\nwant        %s", got, tt.ja4r)
			}
		})
	}
}

func TestJA4IgnoresGREASEAndOrder(t *testing.T) {
	a := chromium156()
	b := chromium156()
	// Reverse the extension order and change every GREASE value.
	for i, j := 0, len(b.Extensions)-1; i < j; i, j = i+1, j-1 {
		b.Extensions[i], b.Extensions[j] = b.Extensions[j], b.Extensions[i]
	}
	for i := range b.Extensions {
		if IsGREASE(b.Extensions[i].Type) {
			b.Extensions[i].Type = 0x1a1a
		}
	}
	b.CipherSuites[0] = 0xdada
	b = reparse(b)
	if a.JA4() != b.JA4() {
		t.Fatalf("JA4 changed with order/GREASE: %s vs %s", a.JA4(), b.JA4())
	}
	if ta, _ := a.JA3(); strings.Contains(ta, "64250") || strings.Contains(ta, "35466") {
		t.Fatalf("JA3 keeps GREASE: %s", ta)
	}
}

func TestALPNCode(t *testing.T) {
	tests := []struct {
		protos []string
		want   string
	}{
		{nil, "00"},
		{[]string{""}, "00"},
		{[]string{"h2", "http/1.1"}, "h2"},
		{[]string{"http/1.1"}, "h1"},
		{[]string{"webrtc"}, "wc"},
		{[]string{"a"}, "aa"},
		{[]string{"\xab\xcd"}, "ad"},
		{[]string{"h2/"}, "6f"}, // "68322f": last byte '/' is not alphanumeric
	}
	for _, tt := range tests {
		if got := alpnCode(tt.protos); got != tt.want {
			t.Errorf("alpnCode(%q) = %q, want %q", tt.protos, got, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		name     string
		legacy   uint16
		versions []uint16
		want     string
	}{
		{"legacy TLS 1.2", VersionTLS12, nil, "12"},
		{"legacy TLS 1.0", VersionTLS10, nil, "10"},
		{"supported_versions wins", VersionTLS12, []uint16{0x0a0a, VersionTLS13, VersionTLS12}, "13"},
		{"GREASE only", VersionTLS12, []uint16{0x0a0a}, "12"},
		{"DTLS newest is numerically lowest", VersionDTLS12, []uint16{VersionDTLS12, VersionDTLS13}, "d3"},
		{"DTLS 1.0 legacy", VersionDTLS10, nil, "d1"},
		{"SSL 3", 0x0300, nil, "s3"},
		{"unknown", 0x1234, nil, "00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &ClientHello{LegacyVersion: tt.legacy, SupportedVersions: tt.versions}
			if got := versionCode(c.Version()); got != tt.want {
				t.Errorf("version = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCountsCapAt99(t *testing.T) {
	c := &ClientHello{LegacyVersion: VersionTLS12, CompressionMethods: []byte{0}}
	for i := range 120 {
		c.CipherSuites = append(c.CipherSuites, uint16(0x0100+i))
		c.Extensions = append(c.Extensions, ext(uint16(0x0100+i)))
	}
	c = reparse(c)
	if got := c.JA4()[:10]; got != "t12i999900" {
		t.Fatalf("prefix = %s, want t12i999900", got)
	}
}

func TestJA3(t *testing.T) {
	c := reparse(&ClientHello{
		LegacyVersion:      VersionTLS12,
		CipherSuites:       []uint16{0x0a0a, 0x1301, 0x1302},
		CompressionMethods: []byte{0},
		Extensions: []Extension{
			ext(0x1a1a), extSNI("a.example"), extVersions(VersionTLS13),
			extKeyShares(KeyShare{0x001d, 32}), extList16(ExtSupportedGroups, 0x2a2a, 0x001d, 0x0017),
			ext(ExtECPointFormats, 1, 0),
		},
	})
	text, hash := c.JA3()
	// md5 computed by hand: printf '%s' TEXT | md5sum
	if want := "771,4865-4866,0-43-51-10-11,29-23,0"; text != want {
		t.Fatalf("JA3 text = %s, want %s", text, want)
	}
	if want := "46e963d140b57a3342d05637fc92db80"; hash != want {
		t.Fatalf("JA3 hash = %s, want %s", hash, want)
	}
}

func TestJA4SAndSummary(t *testing.T) {
	s, err := ParseServerHello(marshalServerHello(&ServerHello{
		LegacyVersion: VersionTLS12,
		CipherSuite:   0x1301,
		Extensions: []Extension{
			ext(ExtSupportedVersions, 0x03, 0x04),
			{Type: ExtKeyShare, Data: vec16(put16(nil, 0x11ec), make([]byte, 1120))},
		},
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	// sha256("002b,0033") by hand.
	if got, want := s.JA4S(), "t130200_1301_a56c5b993250"; got != want {
		t.Errorf("JA4S = %s, want %s", got, want)
	}
	want := ServerSummary{Version: VersionTLS13, CipherSuite: 0x1301, Extensions: []uint16{0x002b, 0x0033}}
	if got := s.Summary(); !got.Equal(want) {
		t.Errorf("summary = %v, want %v", got, want)
	}
	if got := s.Summary().String(); got != "version=TLS1.3 cipher=AES128-GCM-SHA256 extensions=[supported_versions,key_share]" {
		t.Errorf("summary string = %s", got)
	}
	if s.KeyShareGroup != 0x11ec || s.HelloRetryRequest {
		t.Errorf("key share %04x, retry %v", s.KeyShareGroup, s.HelloRetryRequest)
	}
}

// BenchmarkClientHelloJA4 decodes a Chromium-sized hello and computes its
// JA4, the per-hello work of the fingerprint command.
func BenchmarkClientHelloJA4(b *testing.B) {
	body := marshalClientHello(chromium156())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := ParseClientHello(body, false)
		if err != nil {
			b.Fatal(err)
		}
		_ = c.JA4()
	}
}
