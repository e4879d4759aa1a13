package dtlsshape

import (
	"encoding/hex"
	"testing"
)

func FuzzProfileFromClientHello(f *testing.F) {
	f.Add("")
	f.Add("16fefd0000000000000000")
	f.Add("010000010000000000000001")
	f.Add(hex.EncodeToString([]byte{0xfe, 0xfd}))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ProfileFromClientHello(s)
		if err != nil {
			return
		}
		// Whatever a fingerprint decodes to must be a profile peers can
		// complete a handshake with.
		if err := p.validate(); err != nil {
			t.Fatalf("accepted profile fails validation: %v", err)
		}
	})
}
