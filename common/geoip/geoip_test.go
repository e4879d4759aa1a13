package geoip

import (
	"bufio"
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
)

const v4db = `# comment

16777216,16777471,AU
16777472,16778239,CN
# dotted form is accepted
1.4.0.0 , 1.4.0.255 , jp
15726992,15726999,??
3232235520,3232235775,ZZ
`

const v6db = `2001::,2001:0:ffff:ffff:ffff:ffff:ffff:ffff,??
2001:2::,2001:2:0:ffff:ffff:ffff:ffff:ffff,JP
2001:4:112::,2001:4:112:ffff:ffff:ffff:ffff:ffff,US
`

func TestLookup(t *testing.T) {
	tab, err := Parse(strings.NewReader(v4db), strings.NewReader(v6db))
	if err != nil {
		t.Fatal(err)
	}
	if n4, n6 := tab.Len(); n4 != 5 || n6 != 3 {
		t.Fatalf("Len = %d, %d", n4, n6)
	}
	tests := []struct {
		ip string
		cc string
		ok bool
	}{
		{"1.0.0.0", "AU", true},
		{"1.0.0.255", "AU", true},
		{"1.0.1.0", "CN", true},
		{"1.0.3.255", "CN", true},
		{"1.0.4.0", "??", false},
		{"0.255.255.255", "??", false},
		{"0.239.250.144", "??", false}, // in a ?? range
		{"1.4.0.7", "JP", true},        // lower-case code normalised
		{"::ffff:1.0.0.1", "AU", true}, // IPv4-mapped
		{"192.168.0.1", "ZZ", true},
		{"255.255.255.255", "??", false},
		{"2001:2::1", "JP", true},
		{"2001:4:112:ffff::1", "US", true},
		{"2001:4:113::", "??", false},
		{"::", "??", false},
		{"2001::5", "??", false},
		{"fe80::1%eth0", "??", false},
	}
	for _, tt := range tests {
		cc, ok := tab.Lookup(netip.MustParseAddr(tt.ip))
		if cc != tt.cc || ok != tt.ok {
			t.Errorf("Lookup(%s) = %q, %v; want %q, %v", tt.ip, cc, ok, tt.cc, tt.ok)
		}
	}
	var nilTab *Table
	if cc, ok := nilTab.Lookup(netip.MustParseAddr("1.0.0.1")); ok || cc != Unknown {
		t.Error("nil table found something")
	}
	if _, ok := tab.Lookup(netip.Addr{}); ok {
		t.Error("invalid addr found")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		v4   string
		v6   string
		line int
	}{
		{"two fields", "1,2\n", "", 1},
		{"four fields", "1,2,AU,x\n", "", 1},
		{"bad number", "#\nx,2,AU\n", "", 2},
		{"too big", "4294967296,4294967296,AU\n", "", 1},
		{"reversed", "10,5,AU\n", "", 1},
		{"bad cc", "1,2,AUS\n", "", 1},
		{"digit cc", "1,2,A1\n", "", 1},
		{"v6 in v4 file", "::1,::2,AU\n", "", 1},
		{"v4 in v6 file", "", "1.2.3.4,1.2.3.5,AU\n", 1},
		{"zone", "", "fe80::1%x,fe80::2,AU\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.v4), strings.NewReader(tt.v6))
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line != tt.line {
				t.Fatalf("err = %v, want ParseError at line %d", err, tt.line)
			}
		})
	}
	_, err := Parse(strings.NewReader("1,10,AU\n5,20,NZ\n"), nil)
	if !errors.Is(err, ErrOverlap) {
		t.Fatalf("overlap: err = %v", err)
	}
	_, err = Parse(strings.NewReader(strings.Repeat("1", maxLineLength+10)+"\n"), nil)
	if err == nil {
		t.Fatal("over-long line accepted")
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load("/nonexistent/geoip", ""); err == nil {
		t.Fatal("missing file loaded")
	}
	tab, err := Load("", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tab.Lookup(netip.MustParseAddr("1.1.1.1")); ok {
		t.Fatal("empty table found something")
	}
}

// TestLoadTorDatabase loads Debian's real databases when installed.
func TestLoadTorDatabase(t *testing.T) {
	const v4, v6 = "/usr/share/tor/geoip", "/usr/share/tor/geoip6"
	if _, err := os.Stat(v4); err != nil {
		t.Skip("tor-geoipdb not installed")
	}
	// The first lines of each file are enough to check the real format,
	// and keep this test fast under the race detector.
	head := func(path string) io.Reader {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		var b strings.Builder
		sc := bufio.NewScanner(f)
		for i := 0; i < 20000 && sc.Scan(); i++ {
			b.WriteString(sc.Text())
			b.WriteByte('\n')
		}
		return strings.NewReader(b.String())
	}
	tab, err := Parse(head(v4), head(v6))
	if err != nil {
		t.Fatal(err)
	}
	n4, n6 := tab.Len()
	if n4 < 1000 || n6 < 1000 {
		t.Fatalf("only %d/%d ranges", n4, n6)
	}
	// 1.0.0.0/24 is allocated to APNIC in Australia in every edition.
	if cc, ok := tab.Lookup(netip.MustParseAddr("1.0.0.1")); !ok || cc != "AU" {
		t.Fatalf("1.0.0.1 -> %q, %v", cc, ok)
	}
}
