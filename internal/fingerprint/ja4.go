package fingerprint

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// versionCode is JA4's two-character protocol version.
func versionCode(v uint16) string {
	switch v {
	case VersionTLS13:
		return "13"
	case VersionTLS12:
		return "12"
	case VersionTLS11:
		return "11"
	case VersionTLS10:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case VersionDTLS10:
		return "d1"
	case VersionDTLS12:
		return "d2"
	case VersionDTLS13:
		return "d3"
	}
	return "00"
}

// versionRank orders versions from oldest to newest. DTLS counts down on
// the wire (0xfeff is 1.0, 0xfefc is 1.3), so "highest" must not be
// numeric.
func versionRank(v uint16) int {
	if v>>8 == 0xfe {
		return 0x10000 - int(v) // 0xfefc ranks above 0xfefd
	}
	return int(v)
}

// Version returns the newest protocol version the hello offers:
// supported_versions' newest non-GREASE entry when present, else the
// legacy client_version (the rule JA4 uses).
func (c *ClientHello) Version() uint16 {
	best, found := uint16(0), false
	for _, v := range c.SupportedVersions {
		if IsGREASE(v) {
			continue
		}
		if !found || versionRank(v) > versionRank(best) {
			best, found = v, true
		}
	}
	if found {
		return best
	}
	return c.LegacyVersion
}

func isAlnum(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z'
}

// alpnCode is JA4's two-character summary of the first ALPN value: its
// first and last characters, or the first and last hex digits of the value
// when either is not alphanumeric, or "00" without ALPN.
func alpnCode(protos []string) string {
	if len(protos) == 0 || protos[0] == "" {
		return "00"
	}
	p := protos[0]
	first, last := p[0], p[len(p)-1]
	if isAlnum(first) && isAlnum(last) {
		return string([]byte{first, last})
	}
	h := hex.EncodeToString([]byte(p))
	return string([]byte{h[0], h[len(h)-1]})
}

// count2 formats a count as JA4's two digits, capped at 99.
func count2(n int) string {
	return fmt.Sprintf("%02d", min(n, 99))
}

func hexList(vs []uint16) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 5*len(vs))
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, digits[v>>12], digits[v>>8&0xf], digits[v>>4&0xf], digits[v&0xf])
	}
	return string(b)
}

func withoutGREASE(vs []uint16) []uint16 {
	out := make([]uint16, 0, len(vs))
	for _, v := range vs {
		if !IsGREASE(v) {
			out = append(out, v)
		}
	}
	return out
}

// hash12 is JA4's truncated hash: the first 12 hex digits of SHA-256, or
// twelve zeros for an empty input.
func hash12(s string) string {
	if s == "" {
		return "000000000000"
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:12]
}

// extensionTypes returns the extension code points in wire order.
func extensionTypes(exts []Extension) []uint16 {
	v := make([]uint16, len(exts))
	for i, e := range exts {
		v[i] = e.Type
	}
	return v
}

// ja4Parts returns JA4's three sections before hashing: the prefix
// ("t13d1516h2"), the sorted cipher list and the sorted extension list
// (without SNI and ALPN) joined to the signature algorithms.
func (c *ClientHello) ja4Parts() (prefix, ciphers, exts string) {
	proto := "t"
	if c.DTLS {
		proto = "d"
	}
	sni := "i"
	if c.HasServerName {
		sni = "d"
	}
	suites := withoutGREASE(c.CipherSuites)
	types := withoutGREASE(extensionTypes(c.Extensions))
	prefix = proto + versionCode(c.Version()) + sni + count2(len(suites)) + count2(len(types)) + alpnCode(c.ALPN)

	slices.Sort(suites)
	ciphers = hexList(suites)

	var kept []uint16
	for _, t := range types {
		if t != ExtServerName && t != ExtALPN {
			kept = append(kept, t)
		}
	}
	slices.Sort(kept)
	exts = hexList(kept)
	if sigs := withoutGREASE(c.SignatureAlgorithms); len(sigs) > 0 && exts != "" {
		exts += "_" + hexList(sigs)
	}
	return prefix, ciphers, exts
}

// JA4 returns the hello's JA4 fingerprint (FoxIO's JA4 specification):
// for example "t13d1516h2_8daaf6152771_d8a2da3f94cd". GREASE is ignored
// throughout, so every connection of one client gives the same value.
func (c *ClientHello) JA4() string {
	prefix, ciphers, exts := c.ja4Parts()
	return prefix + "_" + hash12(ciphers) + "_" + hash12(exts)
}

// JA4R returns JA4 with its lists in the clear instead of hashed ("ja4_r"),
// which shows what differs between two fingerprints.
func (c *ClientHello) JA4R() string {
	prefix, ciphers, exts := c.ja4Parts()
	return prefix + "_" + ciphers + "_" + exts
}

func decList(vs []uint16) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strconv.Itoa(int(v))
	}
	return strings.Join(parts, "-")
}

// JA3 returns the JA3 string (legacy version, ciphers, extensions in wire
// order, groups, point formats; GREASE removed) and its MD5. JA3 is blind
// to extension permutation only in its "sorted" variants, so a browser's
// JA3 changes per connection; it is given for comparison with older tools.
func (c *ClientHello) JA3() (text, hash string) {
	formats := make([]uint16, len(c.ECPointFormats))
	for i, f := range c.ECPointFormats {
		formats[i] = uint16(f)
	}
	text = strings.Join([]string{
		strconv.Itoa(int(c.LegacyVersion)),
		decList(withoutGREASE(c.CipherSuites)),
		decList(withoutGREASE(extensionTypes(c.Extensions))),
		decList(withoutGREASE(c.SupportedGroups)),
		decList(formats),
	}, ",")
	sum := md5.Sum([]byte(text))
	return text, hex.EncodeToString(sum[:])
}

// JA4S returns the ServerHello's JA4S fingerprint: protocol, selected
// version, extension count and ALPN, then the cipher, then the hash of the
// extensions in wire order.
func (s *ServerHello) JA4S() string {
	proto := "t"
	if s.DTLS {
		proto = "d"
	}
	alpn := "00"
	if s.ALPN != "" {
		alpn = alpnCode([]string{s.ALPN})
	}
	types := extensionTypes(s.Extensions)
	return fmt.Sprintf("%s%s%s%s_%04x_%s", proto, versionCode(s.SelectedVersion), count2(len(types)), alpn,
		s.CipherSuite, hash12(hexList(types)))
}

// ServerSummary is what a ServerHello gives away about the server's stack
// independently of the client: the version and cipher it chose and which
// extensions it answered with.
type ServerSummary struct {
	Version     uint16
	CipherSuite uint16
	// Extensions holds the extension types, sorted, GREASE removed.
	Extensions []uint16
}

// Summary returns the hello's [ServerSummary].
func (s *ServerHello) Summary() ServerSummary {
	ext := withoutGREASE(extensionTypes(s.Extensions))
	slices.Sort(ext)
	return ServerSummary{Version: s.SelectedVersion, CipherSuite: s.CipherSuite, Extensions: ext}
}

// Equal reports whether two summaries match field for field.
func (a ServerSummary) Equal(b ServerSummary) bool {
	return a.Version == b.Version && a.CipherSuite == b.CipherSuite && slices.Equal(a.Extensions, b.Extensions)
}

func (a ServerSummary) String() string {
	return fmt.Sprintf("version=%s cipher=%s extensions=[%s]", VersionName(a.Version), CipherName(a.CipherSuite), extNames(a.Extensions))
}
