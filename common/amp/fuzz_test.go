package amp

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzDecodePath(f *testing.F) {
	f.Add("0abcdefghijkl/MS4wCnsib2ZmZXIiOiJ4In0")
	f.Add("0/")
	f.Add("1/x")
	f.Fuzz(func(t *testing.T, path string) {
		b, err := DecodePath(path)
		if err != nil {
			return
		}
		// Anything accepted re-encodes to a path that decodes identically.
		back, err := DecodePath(EncodePath(b))
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("round trip of %q: %q, %v", b, back, err)
		}
	})
}

func FuzzDecodeArmor(f *testing.F) {
	var doc bytes.Buffer
	Armor(&doc, []byte(`{"answer":"x"}`))
	f.Add(doc.Bytes())
	f.Add([]byte("<pre>0aGVsbG8=</pre>"))
	f.Add([]byte("<pre><pre></pre>0</pre><!-- <pre> -->"))
	f.Fuzz(func(t *testing.T, b []byte) {
		payload, err := DecodeArmor(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out strings.Builder
		if err := Armor(&out, payload); err != nil {
			t.Fatal(err)
		}
		back, err := DecodeArmor(strings.NewReader(out.String()))
		if err != nil || !bytes.Equal(back, payload) {
			t.Fatalf("re-armor round trip failed: %v", err)
		}
	})
}
