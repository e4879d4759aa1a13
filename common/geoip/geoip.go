// Package geoip maps IP addresses to country codes using Tor's geoip
// databases (Debian package tor-geoipdb: /usr/share/tor/geoip and geoip6).
//
// File format: '#' starts a comment line; every other non-empty line is
// "LOW,HIGH,CC". In the IPv4 file LOW and HIGH are addresses written as
// decimal 32-bit integers (dotted quads are accepted too); in the IPv6 file
// they are IPv6 addresses. CC is a two-letter country code, or "??" for
// ranges of unknown location. Ranges are inclusive and must not overlap.
package geoip

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Unknown is the country code of addresses in no range or in a "??" range.
const Unknown = "??"

// entry is one range. Addresses are stored as 16-byte (IPv4-mapped for
// IPv4) values so one lookup routine serves both families.
type entry struct {
	lo, hi netip.Addr
	cc     [2]byte
}

// Table is an immutable set of ranges; it is safe for concurrent use.
type Table struct {
	v4, v6 []entry
}

// ParseError reports a malformed line.
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("geoip: line %d: %s", e.Line, e.Msg) }

// ErrOverlap is wrapped by errors for databases with overlapping ranges.
var ErrOverlap = errors.New("geoip: overlapping ranges")

// maxLineLength bounds a line so a corrupt file cannot exhaust memory.
const maxLineLength = 1024

// parse reads one database; ipv6 selects the address syntax.
func parse(r io.Reader, ipv6 bool) ([]entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLineLength)
	var out []entry
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		e, err := parseLine(string(line), ipv6)
		if err != nil {
			return nil, &ParseError{Line: n, Msg: err.Error()}
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("geoip: read: %w", err)
	}
	slices.SortFunc(out, func(a, b entry) int { return a.lo.Compare(b.lo) })
	for i := 1; i < len(out); i++ {
		if out[i].lo.Compare(out[i-1].hi) <= 0 {
			return nil, fmt.Errorf("%w: %v-%v and %v-%v", ErrOverlap, out[i-1].lo, out[i-1].hi, out[i].lo, out[i].hi)
		}
	}
	return out, nil
}

func parseLine(line string, ipv6 bool) (entry, error) {
	fields := strings.Split(line, ",")
	if len(fields) != 3 {
		return entry{}, fmt.Errorf("want 3 comma-separated fields, have %d", len(fields))
	}
	lo, err := parseAddr(fields[0], ipv6)
	if err != nil {
		return entry{}, err
	}
	hi, err := parseAddr(fields[1], ipv6)
	if err != nil {
		return entry{}, err
	}
	if hi.Less(lo) {
		return entry{}, fmt.Errorf("range end %v before start %v", hi, lo)
	}
	cc := strings.TrimSpace(fields[2])
	if !validCC(cc) {
		return entry{}, fmt.Errorf("invalid country code %q", cc)
	}
	return entry{lo: lo, hi: hi, cc: [2]byte{cc[0], cc[1]}}, nil
}

func validCC(cc string) bool {
	if cc == Unknown {
		return true
	}
	return len(cc) == 2 && isUpperOrLower(cc[0]) && isUpperOrLower(cc[1])
}

func isUpperOrLower(c byte) bool { return ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') }

func parseAddr(s string, ipv6 bool) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if ipv6 {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, fmt.Errorf("invalid IPv6 address %q", s)
		}
		return a, nil
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("invalid IPv4 address %q", s)
	}
	return a, nil
}

// Parse builds a table from an IPv4 and an IPv6 database; either may be nil.
func Parse(v4, v6 io.Reader) (*Table, error) {
	t := &Table{}
	var err error
	if v4 != nil {
		if t.v4, err = parse(v4, false); err != nil {
			return nil, fmt.Errorf("geoip: ipv4 database: %w", err)
		}
	}
	if v6 != nil {
		if t.v6, err = parse(v6, true); err != nil {
			return nil, fmt.Errorf("geoip: ipv6 database: %w", err)
		}
	}
	return t, nil
}

// Load reads the two database files. An empty path skips that family.
func Load(v4Path, v6Path string) (*Table, error) {
	open := func(p string) (*os.File, error) {
		if p == "" {
			return nil, nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("geoip: %w", err)
		}
		return f, nil
	}
	f4, err := open(v4Path)
	if err != nil {
		return nil, err
	}
	if f4 != nil {
		defer f4.Close()
	}
	f6, err := open(v6Path)
	if err != nil {
		return nil, err
	}
	if f6 != nil {
		defer f6.Close()
	}
	var r4, r6 io.Reader
	if f4 != nil {
		r4 = bufio.NewReaderSize(f4, 64*1024)
	}
	if f6 != nil {
		r6 = bufio.NewReaderSize(f6, 64*1024)
	}
	return Parse(r4, r6)
}

// Len returns the number of IPv4 and IPv6 ranges.
func (t *Table) Len() (v4, v6 int) { return len(t.v4), len(t.v6) }

// Lookup returns the country code of ip, or [Unknown] and false when no range
// holds it (or it lies in a "??" range). Codes are returned upper-case.
// A nil Table knows nothing.
func (t *Table) Lookup(ip netip.Addr) (string, bool) {
	if t == nil || !ip.IsValid() {
		return Unknown, false
	}
	ip = ip.Unmap().WithZone("")
	list := t.v6
	if ip.Is4() {
		list = t.v4
	}
	// The first range starting after ip; the candidate is the one before.
	i, _ := slices.BinarySearchFunc(list, ip, func(e entry, a netip.Addr) int {
		if e.lo.Compare(a) <= 0 {
			return -1
		}
		return 1
	})
	if i == 0 {
		return Unknown, false
	}
	e := list[i-1]
	if e.hi.Less(ip) {
		return Unknown, false
	}
	cc := strings.ToUpper(string(e.cc[:]))
	if cc == Unknown {
		return Unknown, false
	}
	return cc, true
}
