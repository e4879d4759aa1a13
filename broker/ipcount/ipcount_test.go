package ipcount

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// addrN returns a distinct public-looking IPv4 or IPv6 address for each i.
func addrN(i int) netip.Addr {
	if i%2 == 0 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(0x0b000000+i))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	return netip.AddrFrom16(b)
}

func TestSketchAccuracy(t *testing.T) {
	iv := &interval{key: [32]byte{1, 2, 3}}
	tests := []struct {
		n      int
		maxErr float64 // relative
	}{
		{0, 0}, {1, 0}, {2, 0}, {7, 0}, {50, 0}, {1000, 0}, {exactLimit, 0}, {exactLimit + 1, 0.02}, {20000, 0.03}, {200000, 0.03},
	}
	for _, tt := range tests {
		s := newSketch()
		for i := range tt.n {
			h := iv.hash(addrN(i))
			s.add(h)
			s.add(h) // duplicates do not count
		}
		got := s.Estimate()
		if tt.n == 0 {
			if got != 0 {
				t.Errorf("n=0: estimate %d", got)
			}
			continue
		}
		rel := math.Abs(float64(got)-float64(tt.n)) / float64(tt.n)
		if rel > tt.maxErr {
			t.Errorf("n=%d: estimate %d (error %.2f%%, allowed %.2f%%)", tt.n, got, 100*rel, 100*tt.maxErr)
		}
	}
}

func TestSketchExtremeHashes(t *testing.T) {
	// All-zero and all-one remainders hit the largest and smallest ranks
	// (registers only: the exact set is off).
	s := newSketch()
	s.exact = nil
	s.add(0)
	s.add(math.MaxUint64)
	s.add(1 << 63) // a third register, with an all-zero remainder
	if got := s.Estimate(); got != 3 {
		t.Fatalf("estimate %d, want 3", got)
	}
	for _, r := range s.reg {
		if r > maxRank {
			t.Fatalf("register %d above max rank %d", r, maxRank)
		}
	}
}

var testGroups = map[string][]string{"clients": {"http", "ampcache", "sqs"}, "proxies": {"standalone", "webext"}}

func TestCounter(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	c, err := New(testGroups, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		c.Add(addrN(i), "clients", "http")
	}
	for i := 20; i < 40; i++ { // 10 of them also came over HTTP
		c.Add(addrN(i), "clients", "ampcache")
	}
	c.Add(addrN(1), "clients", "nosuchmethod") // total only; already counted
	c.Add(addrN(99), "clients", "nosuchmethod")
	c.Add(netip.Addr{}, "clients", "http") // invalid: ignored
	c.Add(addrN(5), "nosuchgroup", "http") // ignored
	c.Add(netip.MustParseAddr("::ffff:11.0.0.0"), "proxies", "webext")
	c.Add(netip.MustParseAddr("11.0.0.0"), "proxies", "standalone") // same address, unmapped
	r := c.Rotate(t0.Add(time.Hour))
	want := map[string]map[string]uint64{
		"clients": {"total": 41, "http": 30, "ampcache": 20, "sqs": 0},
		"proxies": {"total": 1, "standalone": 1, "webext": 1},
	}
	for g, labels := range want {
		for l, n := range labels {
			if got := r.Counts[g][l]; got != n {
				t.Errorf("%s/%s = %d, want %d", g, l, got, n)
			}
		}
		if len(r.Counts[g]) != len(labels) {
			t.Errorf("%s: labels %v, want %v", g, r.Counts[g], labels)
		}
	}
	if len(r.Counts) != len(want) {
		t.Errorf("groups %v", r.Counts)
	}
	if !r.Start.Equal(t0) || !r.End.Equal(t0.Add(time.Hour)) {
		t.Errorf("interval %v–%v", r.Start, r.End)
	}
	// The next interval starts empty, under a new key.
	c.Add(addrN(1), "clients", "sqs")
	r2 := c.Rotate(t0.Add(2 * time.Hour))
	if r2.Counts["clients"]["total"] != 1 || r2.Counts["clients"]["sqs"] != 1 || r2.Counts["clients"]["http"] != 0 {
		t.Errorf("second interval %v", r2.Counts)
	}
	if !r2.Start.Equal(t0.Add(time.Hour)) {
		t.Errorf("second interval starts %v", r2.Start)
	}
}

func TestKeyChangesEachInterval(t *testing.T) {
	c, err := New(testGroups, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k1 := c.cur.key
	h1 := c.cur.hash(addrN(1))
	c.Rotate(time.Now())
	if c.cur.key == k1 || c.cur.hash(addrN(1)) == h1 {
		t.Fatal("key or hash survived rotation")
	}
}

func TestNewRejects(t *testing.T) {
	for _, g := range []map[string][]string{
		{"": {"a"}},
		{"g": {"total"}},
		{"g": {""}},
	} {
		if _, err := New(g, time.Now()); err == nil {
			t.Errorf("New(%v) succeeded", g)
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "ipcount-")
	start := time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)
	r := Report{Start: start, End: start.Add(time.Hour), Counts: map[string]map[string]uint64{"clients": {"total": 3, "http": 3}}}
	name, err := WriteFile(prefix, r)
	if err != nil {
		t.Fatal(err)
	}
	if want := prefix + "2026-11-28T130000Z.json"; name != want {
		t.Fatalf("name %s, want %s", name, want)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	if !back.Start.Equal(r.Start) || !back.End.Equal(r.End) || back.Counts["clients"]["http"] != 3 {
		t.Fatalf("read back %+v", back)
	}
	// The same start again never replaces the first report.
	r.Counts["clients"]["http"] = 5
	name2, err := WriteFile(prefix, r)
	if err != nil {
		t.Fatal(err)
	}
	if name2 != prefix+"2026-11-28T130000Z-1.json" {
		t.Fatalf("second name %s", name2)
	}
	if again, _ := os.ReadFile(name); string(again) != string(data) {
		t.Fatal("first report changed")
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s", e.Name())
		}
	}
	if len(ents) != 2 {
		t.Errorf("%d files", len(ents))
	}
	// An unwritable place is an error, not a panic.
	if _, err := WriteFile(filepath.Join(dir, "missing", "x-"), r); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func BenchmarkAdd(b *testing.B) {
	c, _ := New(testGroups, time.Now())
	a := netip.MustParseAddr("198.51.100.7")
	for b.Loop() {
		c.Add(a, "proxies", "standalone")
	}
}

// TestSketchSmallCountsExact: two hashes in one register still count as two
// while the exact set is on.
func TestSketchSmallCountsExact(t *testing.T) {
	s := newSketch()
	s.add(1 << 40) // same register index (top bits), different remainders
	s.add(1 << 41)
	if got := s.Estimate(); got != 2 {
		t.Fatalf("estimate %d, want 2", got)
	}
}
