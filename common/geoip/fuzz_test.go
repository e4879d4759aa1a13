package geoip

import (
	"bytes"
	"net/netip"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(v4db), []byte(v6db), []byte{1, 0, 0, 1})
	f.Add([]byte("1,2,AU\n"), []byte("::1,::2,??\n"), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, v4, v6, ip []byte) {
		tab, err := Parse(bytes.NewReader(v4), bytes.NewReader(v6))
		if err != nil {
			return
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		cc, found := tab.Lookup(a)
		if found == (cc == Unknown) {
			t.Fatalf("Lookup(%v) = %q, %v", a, cc, found)
		}
		// Compare with a linear scan.
		a = a.Unmap()
		list := tab.v6
		if a.Is4() {
			list = tab.v4
		}
		want := Unknown
		for _, e := range list {
			if e.lo.Compare(a) <= 0 && a.Compare(e.hi) <= 0 {
				want = string(bytes.ToUpper(e.cc[:]))
			}
		}
		if cc != want {
			t.Fatalf("Lookup(%v) = %q, linear scan %q", a, cc, want)
		}
	})
}
