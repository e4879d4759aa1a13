//go:build !js

package dtlsshape

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"

	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
)

// rawExtension is one extension as bytes; it lets a hello carry
// extensions pion has no type for (key_share, supported_versions,
// psk_key_exchange_modes).
type rawExtension struct {
	typ  uint16
	data []byte
}

func (e *rawExtension) TypeValue() extension.TypeValue { return extension.TypeValue(e.typ) }

func (e *rawExtension) Marshal() ([]byte, error) {
	if len(e.data) > 0xffff {
		return nil, fmt.Errorf("dtlsshape: extension %#04x too long", e.typ)
	}
	out := make([]byte, 4, 4+len(e.data))
	binary.BigEndian.PutUint16(out, e.typ)
	binary.BigEndian.PutUint16(out[2:], uint16(len(e.data)))
	return append(out, e.data...), nil
}

func (e *rawExtension) Unmarshal(b []byte) error {
	if len(b) < 4 || int(binary.BigEndian.Uint16(b[2:])) != len(b)-4 {
		return fmt.Errorf("dtlsshape: malformed extension")
	}
	e.typ = binary.BigEndian.Uint16(b)
	e.data = append([]byte(nil), b[4:]...)
	return nil
}

// toRaw converts pion's typed extensions to bytes.
func toRaw(exts []extension.Extension) ([]*rawExtension, error) {
	out := make([]*rawExtension, 0, len(exts))
	for _, e := range exts {
		b, err := e.Marshal()
		if err != nil {
			return nil, err
		}
		if len(b) == 0 { // pion marshals a disabled extension as nothing
			continue
		}
		r := &rawExtension{}
		if err := r.Unmarshal(b); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
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

// keyShareEntry generates a fresh key share for group. The private keys
// are dropped: the stack only completes DTLS 1.2, so a share is never
// used, but it must be a well-formed public key (a censor can check that
// an ML-KEM encapsulation key decodes), hence real key generation.
func keyShareEntry(group uint16) ([]byte, error) {
	var pub []byte
	switch group {
	case groupX25519MLKEM768:
		dk, err := mlkem.GenerateKey768()
		if err != nil {
			return nil, err
		}
		x, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		pub = append(dk.EncapsulationKey().Bytes(), x.PublicKey().Bytes()...)
	case groupX25519, groupP256, groupP384:
		curve := map[uint16]ecdh.Curve{groupX25519: ecdh.X25519(), groupP256: ecdh.P256(), groupP384: ecdh.P384()}[group]
		k, err := curve.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		pub = k.PublicKey().Bytes()
	default:
		return nil, fmt.Errorf("dtlsshape: no key share for group %#04x", group)
	}
	out := binary.BigEndian.AppendUint16(nil, group)
	out = binary.BigEndian.AppendUint16(out, uint16(len(pub)))
	return append(out, pub...), nil
}

func keyShareExtension(groups []uint16) ([]byte, error) {
	var entries []byte
	for _, g := range groups {
		e, err := keyShareEntry(g)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e...)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(entries))), entries...), nil
}

// extensionData builds the data of one profile extension.
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
	case extSupportedVersion:
		return u16List(p.SupportedVersions, 1), nil
	case extPSKModes:
		return append([]byte{byte(len(p.PSKModes))}, p.PSKModes...), nil
	case extKeyShare:
		return keyShareExtension(p.KeyShareGroups)
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
		again := *prev
		again.Cookie = append([]byte(nil), m.Cookie...)
		return &again
	}
	out, err := s.shape(m)
	if err != nil {
		return &m
	}
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

// mimic builds the profile's hello around pion's per-connection values.
func (s *shaper) mimic(m handshake.MessageClientHello, own []*rawExtension, p Profile) (*handshake.MessageClientHello, error) {
	var mki []byte
	for _, e := range own {
		if e.typ == extUseSRTP {
			if _, rest, ok := parseU16List(e.data); ok && len(rest) >= 1 && int(rest[0]) == len(rest)-1 {
				mki = rest[1:]
			}
		}
	}
	order := slices.Clone(p.Extensions)
	if p.PermuteExtensions {
		mrand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	exts := make([]extension.Extension, 0, len(order)+2)
	for _, typ := range order {
		d, err := p.extensionData(typ, mki)
		if err != nil {
			return nil, err
		}
		exts = append(exts, &rawExtension{typ: typ, data: d})
	}
	// Extensions pion needs for this connection that the profile lacks
	// (ALPN, SNI or connection ID when configured) are kept.
	for _, e := range own {
		if !slices.Contains(order, e.typ) {
			exts = append(exts, e)
		}
	}
	out := m
	out.CipherSuiteIDs = slices.Clone(p.CipherSuites)
	out.Extensions = exts
	return &out, nil
}

// randomize shuffles pion's own offer and keeps a random part of each
// list, always keeping what every Snowflake peer needs to complete a
// handshake (an ECDSA AES-GCM suite, x25519 and P-256, the ECDSA P-256
// signature, the AES-CM SRTP profile).
func randomize(m handshake.MessageClientHello, own []*rawExtension) (*handshake.MessageClientHello, error) {
	out := m
	out.CipherSuiteIDs = preferECDSAGCM(randomSubset(m.CipherSuiteIDs, func(c uint16) bool { return c == 0xc02b }))
	exts := make([]extension.Extension, 0, len(own))
	for _, e := range own {
		r := &rawExtension{typ: e.typ, data: e.data}
		switch e.typ {
		case extSupportedGroups:
			if vs, _, ok := parseU16List(e.data); ok {
				r.data = u16List(randomSubset(vs, func(g uint16) bool { return g == groupX25519 || g == groupP256 }), 2)
			}
		case extSignatureAlgs:
			if vs, _, ok := parseU16List(e.data); ok {
				r.data = u16List(randomSubset(vs, func(a uint16) bool { return a == 0x0403 }), 2)
			}
		case extUseSRTP:
			// SRTP_AES128_CM_HMAC_SHA1_80 is the one profile every
			// peer implements (pion/webrtc v3, in Snowflake 2.5, lacks
			// AES-256-GCM): an offer without it can fail the handshake.
			if vs, rest, ok := parseU16List(e.data); ok && slices.Contains(vs, 0x0001) {
				b := u16List(randomSubset(vs, func(p uint16) bool { return p == 0x0001 }), 2)
				r.data = append(b, rest...)
			}
		}
		exts = append(exts, r)
	}
	mrand.Shuffle(len(exts), func(i, j int) { exts[i], exts[j] = exts[j], exts[i] })
	out.Extensions = exts
	return &out, nil
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
