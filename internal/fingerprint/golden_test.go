package fingerprint

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// TestChromiumGoldenHello decodes a ClientHello that Debian's chromium
// 156.0.8078.108 sent to https://broker.test (one TCP payload, captured
// with dumpcap on loopback), independent of this package's test encoders.
func TestChromiumGoldenHello(t *testing.T) {
	text, err := os.ReadFile("testdata/chromium156-tls-clienthello.hex")
	if err != nil {
		t.Fatal(err)
	}
	stream, err := hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		t.Fatal(err)
	}
	var s StreamReassembler
	msgs, err := s.Add(stream)
	if err != nil || len(msgs) != 1 || msgs[0].Type != TypeClientHello {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	c, err := ParseClientHello(msgs[0].Body, false)
	if err != nil {
		t.Fatal(err)
	}
	c.RecordVersion = msgs[0].RecordVersion
	if got, want := c.JA4(), "t13d1517h2_8daaf6152771_cb7bf5808d99"; got != want {
		t.Errorf("JA4 %s, want %s", got, want)
	}
	if c.RecordVersion != VersionTLS10 || c.LegacyVersion != VersionTLS12 || c.ServerName != "broker.test" || len(c.SessionID) != 32 {
		t.Errorf("hello %s", c)
	}
	var anchors, ech []byte
	for _, e := range c.Extensions {
		switch e.Type {
		case 0xca34:
			anchors = e.Data
		case 0xfe0d:
			ech = e.Data
		}
	}
	if len(anchors) != 186 {
		t.Errorf("trust_anchors %d bytes, want 186", len(anchors))
	}
	// GREASE ECH: type, KDF, AEAD, config id, 32-byte enc, payload of
	// 144, 176, 208 or 240 bytes.
	if n := len(ech) - 42; n != 144 && n != 176 && n != 208 && n != 240 {
		t.Errorf("ECH payload %d bytes", n)
	}
	if !IsGREASE(c.Extensions[0].Type) || !IsGREASE(c.Extensions[len(c.Extensions)-1].Type) || !IsGREASE(c.SignatureAlgorithms[0]) {
		t.Errorf("GREASE positions: %s", c)
	}
}
