//go:build !js

package dtlsshape

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/pion/dtls/v4/pkg/protocol/extension"
	"github.com/pion/dtls/v4/pkg/protocol/handshake"

	"github.com/snowflake-go/snowflake/internal/fingerprint"
)

// toRaw converts pion's typed extensions to type and bytes.
func toRaw(exts []extension.Value) ([]extension.Raw, error) {
	out := make([]extension.Raw, 0, len(exts))
	for _, e := range exts {
		d, err := e.MarshalData()
		if err != nil {
			return nil, fmt.Errorf("dtlsshape: extension %#04x: %w", uint16(e.ExtensionType()), err)
		}
		out = append(out, extension.Raw{Type: e.ExtensionType(), Data: d})
	}
	return out, nil
}

// find returns the data of the extension typ in exts.
func find(exts []extension.Raw, typ uint16) ([]byte, bool) {
	for _, e := range exts {
		if uint16(e.Type) == typ {
			return e.Data, true
		}
	}
	return nil, false
}

func u16List(vs []uint16, lenBytes int) []byte {
	b := make([]byte, lenBytes, lenBytes+2*len(vs))
	if lenBytes == 2 {
		binary.BigEndian.PutUint16(b, uint16(2*len(vs)))
	} else {
		b[0] = byte(2 * len(vs))
	}
	for _, v := range vs {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

// parseU16List reads a list with a 2-byte length prefix; ok is false when
// the lengths disagree.
func parseU16List(b []byte) (vs []uint16, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if n%2 != 0 || 2+n > len(b) {
		return nil, nil, false
	}
	for i := 2; i < 2+n; i += 2 {
		vs = append(vs, binary.BigEndian.Uint16(b[i:]))
	}
	return vs, b[2+n:], true
}

// extensionData builds the data of one profile extension that holds no
// per-connection value.
func (p *Profile) extensionData(typ uint16, srtpMKI []byte) ([]byte, error) {
	switch typ {
	case extSupportedGroups:
		return u16List(p.SupportedGroups, 2), nil
	case extPointFormats:
		return append([]byte{byte(len(p.PointFormats))}, p.PointFormats...), nil
	case extSignatureAlgs:
		return u16List(p.SignatureAlgorithms, 2), nil
	case extUseSRTP:
		b := u16List(p.SRTPProfiles, 2)
		b = append(b, byte(len(srtpMKI)))
		return append(b, srtpMKI...), nil
	case extEMS:
		return nil, nil
	case extRenegotiation:
		return []byte{0}, nil
	case extPSKModes:
		return append([]byte{byte(len(p.PSKModes))}, p.PSKModes...), nil
	}
	if d, ok := p.Raw[typ]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("dtlsshape: profile %s lists extension %#04x without data", p.Name, typ)
}

// helloMemory is how many recent hellos a shaper remembers. A DTLS
// client repeats its hello with a cookie after a HelloVerifyRequest, and
// a browser's second hello is its first plus the cookie (same extension
// order, same key shares); the memory keys on the hello's Random, which
// pion keeps for the connection. 1024 covers far more handshakes in
// flight than a proxy's capacity while bounding memory (~1.5 MB).
const helloMemory = 1024

// shaper rewrites ClientHellos for one mode and profile.
type shaper struct {
	mode    Mode
	profile Profile

	mu     sync.Mutex // guards recent and order
	recent map[[32]byte]*handshake.MessageClientHello
	order  [][32]byte // insertion order, oldest first
}

func newShaper(mode Mode, p Profile) *shaper {
	return &shaper{mode: mode, profile: p, recent: map[[32]byte]*handshake.MessageClientHello{}}
}

// clientHello is the pion ClientHello hook. On an error it falls back to
// pion's own hello: a connection that looks like pion beats no connection.
func (s *shaper) clientHello(m handshake.MessageClientHello) handshake.Message {
	key := m.Random.MarshalFixed()
	s.mu.Lock()
	prev := s.recent[key]
	s.mu.Unlock()
	if prev != nil {
		again, err := retry(prev, m)
		if err != nil {
			return &m
		}
		return again
	}
	out, err := s.shape(m)
	if err != nil {
		return &m
	}
	// Random stays pion's, Unix time in its first four bytes included
	// (browsers fill all 32 at random): pion/dtls derives DTLS 1.2 keys
	// and checks the server's signature with its own Random, so a hello
	// with another one completes DTLS 1.3 but fails the DTLS 1.2 every
	// deployed peer speaks, and pion/webrtc offers no way to set those
	// four bytes (dtls.WithHelloRandomBytesGenerator sets only the other
	// 28 and is not exposed by the SettingEngine).
	s.mu.Lock()
	if _, ok := s.recent[key]; !ok {
		s.recent[key] = out
		s.order = append(s.order, key)
		if len(s.order) > helloMemory {
			delete(s.recent, s.order[0])
			s.order = slices.Delete(s.order, 0, 1)
		}
	}
	s.mu.Unlock()
	return out
}

// retry is the hello sent again after a HelloVerifyRequest (DTLS 1.2) or
// a HelloRetryRequest (DTLS 1.3): the first one with pion's new cookie
// and, after a HelloRetryRequest, pion's new key share and cookie
// extension, in the places a browser puts them (RFC 9147 5.1, RFC 8446
// 4.1.2: the hello is otherwise unchanged).
func retry(prev *handshake.MessageClientHello, m handshake.MessageClientHello) (*handshake.MessageClientHello, error) {
	own, err := toRaw(m.Extensions)
	if err != nil {
		return nil, err
	}
	again := *prev
	again.Cookie = slices.Clone(m.Cookie)
	again.Extensions = make([]extension.Value, 0, len(prev.Extensions)+1)
	for _, e := range prev.Extensions {
		if e.ExtensionType() == extension.Type(extKeyShare) {
			if d, ok := find(own, extKeyShare); ok {
				e = &extension.Raw{Type: extension.Type(extKeyShare), Data: d}
			}
		}
		again.Extensions = append(again.Extensions, e)
	}
	if d, ok := find(own, extCookie); ok {
		again.Extensions = append(again.Extensions, &extension.Raw{Type: extension.Type(extCookie), Data: d})
	}
	return &again, nil
}

func (s *shaper) shape(m handshake.MessageClientHello) (*handshake.MessageClientHello, error) {
	own, err := toRaw(m.Extensions)
	if err != nil {
		return nil, err
	}
	switch s.mode {
	case Mimic:
		return s.mimic(m, own, s.profile)
	case RandomizeMimic:
		p := s.profile
		p.CipherSuites = preferECDSAGCM(shuffleTail(p.CipherSuites, func(c uint16) bool { return c>>8 == 0x13 }))
		p.SupportedGroups = shuffled(p.SupportedGroups)
		p.SignatureAlgorithms = shuffled(p.SignatureAlgorithms)
		p.SRTPProfiles = shuffled(p.SRTPProfiles)
		p.PermuteExtensions = true
		return s.mimic(m, own, p)
	case Randomize:
		return randomize(m, own)
	}
	return &m, nil
}

// offersDTLS13 reports whether pion's own hello offers DTLS 1.3, and so
// carries key shares it holds the private keys of.
func offersDTLS13(own []extension.Raw) bool {
	d, ok := find(own, extSupportedVersion)
	if !ok || len(d) < 1 || int(d[0]) != len(d)-1 || len(d)%2 != 1 {
		return false
	}
	for i := 1; i < len(d); i += 2 {
		if binary.BigEndian.Uint16(d[i:]) == fingerprint.VersionDTLS13 {
			return true
		}
	}
	return false
}

// keptExtensions are pion's extensions that a shaped hello keeps although
// the profile lacks them: each carries a setting the connection needs
// (an ALPN list, a server name, a connection ID). Others pion adds on its
// own (signature_algorithms_cert) are dropped, as Chromium sends none.
var keptExtensions = []uint16{0x0000, extALPN, extConnectionID, 0x003d}

// mimic builds the profile's hello around pion's per-connection values:
// its key shares (pion holds their private keys, so a DTLS 1.3 peer can
// use them and no HelloRetryRequest is needed), SRTP MKI and Random.
func (s *shaper) mimic(m handshake.MessageClientHello, own []extension.Raw, p Profile) (*handshake.MessageClientHello, error) {
	var mki []byte
	if d, ok := find(own, extUseSRTP); ok {
		if _, rest, ok := parseU16List(d); ok && len(rest) >= 1 && int(rest[0]) == len(rest)-1 {
			mki = rest[1:]
		}
	}
	dtls13 := offersDTLS13(own)
	// pion requires (as RFC 8446 4.2.8 asks) key shares in the order of
	// supported_groups.
	p.SupportedGroups = shareOrder(p.SupportedGroups, keyShareGroups(own))
	order := slices.Clone(p.Extensions)
	if p.PermuteExtensions {
		mrand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	exts := make([]extension.Value, 0, len(order)+2)
	for _, typ := range order {
		var d []byte
		switch typ {
		case extKeyShare, extSupportedVersion, extPSKModes:
			// Offering DTLS 1.3 that the stack would not complete
			// could only fail a handshake with a DTLS 1.3 server.
			if !dtls13 {
				continue
			}
			if typ == extPSKModes {
				var err error
				if d, err = p.extensionData(typ, mki); err != nil {
					return nil, err
				}
				break
			}
			d, _ = find(own, typ)
		default:
			var err error
			if d, err = p.extensionData(typ, mki); err != nil {
				return nil, err
			}
		}
		exts = append(exts, &extension.Raw{Type: extension.Type(typ), Data: d})
	}
	for _, e := range own {
		if slices.Contains(keptExtensions, uint16(e.Type)) && !slices.Contains(order, uint16(e.Type)) {
			exts = append(exts, &extension.Raw{Type: e.Type, Data: e.Data})
		}
	}
	out := m
	out.CipherSuiteIDs = slices.Clone(p.CipherSuites)
	if !dtls13 {
		out.CipherSuiteIDs = slices.DeleteFunc(out.CipherSuiteIDs, func(c uint16) bool { return c>>8 == 0x13 })
	}
	out.Extensions = exts
	return &out, nil
}

// randomize shuffles pion's own offer and keeps a random part of each
// list, always keeping what every Snowflake peer needs to complete a
// handshake (an ECDSA AES-GCM suite, the TLS 1.3 AES-128-GCM suite, the
// groups pion sent key shares for, x25519 and P-256, the ECDSA P-256
// signature, the AES-CM SRTP profile).
func randomize(m handshake.MessageClientHello, own []extension.Raw) (*handshake.MessageClientHello, error) {
	out := m
	out.CipherSuiteIDs = preferECDSAGCM(randomSubset(m.CipherSuiteIDs, func(c uint16) bool { return c == 0xc02b || c == 0x1301 }))
	shares := keyShareGroups(own)
	exts := make([]extension.Value, 0, len(own))
	for _, e := range own {
		r := &extension.Raw{Type: e.Type, Data: e.Data}
		switch uint16(e.Type) {
		case extSupportedGroups:
			if vs, _, ok := parseU16List(e.Data); ok {
				r.Data = u16List(shareOrder(randomSubset(vs, func(g uint16) bool {
					return g == groupX25519 || g == groupP256 || slices.Contains(shares, g)
				}), shares), 2)
			}
		case extSignatureAlgs:
			if vs, _, ok := parseU16List(e.Data); ok {
				r.Data = u16List(randomSubset(vs, func(a uint16) bool { return a == 0x0403 }), 2)
			}
		case extUseSRTP:
			// SRTP_AES128_CM_HMAC_SHA1_80 is the one profile every
			// peer implements (pion/webrtc v3, in Snowflake 2.5, lacks
			// AES-256-GCM): an offer without it can fail the handshake.
			if vs, rest, ok := parseU16List(e.Data); ok && slices.Contains(vs, 0x0001) {
				b := u16List(randomSubset(vs, func(p uint16) bool { return p == 0x0001 }), 2)
				r.Data = append(b, rest...)
			}
		}
		exts = append(exts, r)
	}
	mrand.Shuffle(len(exts), func(i, j int) { exts[i], exts[j] = exts[j], exts[i] })
	out.Extensions = exts
	return &out, nil
}

// shareOrder returns groups with the groups in shares moved among
// themselves into the order of shares; the others keep their places.
func shareOrder(groups, shares []uint16) []uint16 {
	out := slices.Clone(groups)
	next := 0
	for i, g := range out {
		if slices.Contains(shares, g) {
			for next < len(shares) && !slices.Contains(groups, shares[next]) {
				next++
			}
			if next < len(shares) {
				out[i] = shares[next]
				next++
			}
		}
	}
	return out
}

// keyShareGroups lists the groups of the key shares in pion's hello.
func keyShareGroups(own []extension.Raw) []uint16 {
	d, ok := find(own, extKeyShare)
	if !ok || len(d) < 2 {
		return nil
	}
	var groups []uint16
	for b := d[2:]; len(b) >= 4; {
		n := int(binary.BigEndian.Uint16(b[2:]))
		if len(b) < 4+n {
			break
		}
		groups = append(groups, binary.BigEndian.Uint16(b))
		b = b[4+n:]
	}
	return groups
}

// randomSubset returns the elements of vs that keep selects plus a random
// part of the others, in random order.
func randomSubset(vs []uint16, keep func(uint16) bool) []uint16 {
	var out []uint16
	for _, v := range vs {
		if keep(v) || mrand.IntN(3) != 0 {
			out = append(out, v)
		}
	}
	return shuffled(out)
}

func shuffled(vs []uint16) []uint16 {
	out := slices.Clone(vs)
	mrand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// shuffleTail keeps the leading elements that head selects in place and
// shuffles the rest.
func shuffleTail(vs []uint16, head func(uint16) bool) []uint16 {
	out := slices.Clone(vs)
	i := 0
	for i < len(out) && head(out[i]) {
		i++
	}
	tail := out[i:]
	mrand.Shuffle(len(tail), func(a, b int) { tail[a], tail[b] = tail[b], tail[a] })
	return out
}

// preferECDSAGCM moves ECDHE-ECDSA-AES128-GCM in front of the other DTLS
// 1.2 suites. pion servers take the first offered suite they implement
// without looking at their certificate's key type; with a shuffled list
// they could pick an RSA suite for an ECDSA certificate and fail.
func preferECDSAGCM(vs []uint16) []uint16 {
	i := slices.Index(vs, 0xc02b)
	if i < 0 {
		return vs
	}
	out := slices.Delete(slices.Clone(vs), i, i+1)
	at := 0
	for at < len(out) && out[at]>>8 == 0x13 {
		at++
	}
	return slices.Insert(out, at, 0xc02b)
}

// serverHello is the pion ServerHello hook of a shaped DTLS server (the
// client, normally). A DTLS 1.3 ServerHello gets BoringSSL's extension
// order (key_share, pre_shared_key, supported_versions; pion puts
// supported_versions first) and a Random without the Unix time pion puts
// in its first four bytes. pion takes a DTLS 1.3 server's Random from the
// hooked hello; a DTLS 1.2 one it keeps deriving keys from its own, so
// DTLS 1.2 hellos (to deployed peers) and HelloRetryRequests, whose Random
// is fixed, pass unchanged.
func serverHello(m handshake.MessageServerHello) handshake.Message {
	own, err := toRaw(m.Extensions)
	if err != nil || !selectsDTLS13(own) {
		return &m
	}
	r := m.Random.MarshalFixed()
	if r == helloRetryRandom {
		return &m
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return &m
	}
	out := m
	out.Random.GMTUnixTime = time.Unix(int64(binary.BigEndian.Uint32(b[:])), 0)
	rank := func(t extension.Type) int {
		switch uint16(t) {
		case extKeyShare:
			return 0
		case extPreSharedKey:
			return 1
		case extSupportedVersion:
			return 2
		}
		return 3
	}
	out.Extensions = slices.Clone(m.Extensions)
	slices.SortStableFunc(out.Extensions, func(a, b extension.Value) int {
		return rank(a.ExtensionType()) - rank(b.ExtensionType())
	})
	return &out
}

// selectsDTLS13 reports whether a ServerHello's supported_versions selects
// DTLS 1.3.
func selectsDTLS13(exts []extension.Raw) bool {
	d, ok := find(exts, extSupportedVersion)
	return ok && len(d) == 2 && binary.BigEndian.Uint16(d) == fingerprint.VersionDTLS13
}

// helloRetryRandom marks a ServerHello as a HelloRetryRequest (RFC 8446
// 4.1.3): SHA-256 of "HelloRetryRequest".
var helloRetryRandom = [32]byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}
