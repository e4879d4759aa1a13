package amp

import (
	"bytes"
	"testing"
)

func BenchmarkArmorRoundTrip(b *testing.B) {
	payload := bytes.Repeat([]byte(`{"answer":"v=0 a=candidate:1 1 udp 2130706431 203.0.113.1 40000 typ host"}`), 16)
	var doc bytes.Buffer
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		doc.Reset()
		if err := Armor(&doc, payload); err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeArmor(bytes.NewReader(doc.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
}
