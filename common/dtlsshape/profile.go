package dtlsshape

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pion/dtls/v4/pkg/protocol"
	"github.com/pion/dtls/v4/pkg/protocol/extension"
	"github.com/pion/dtls/v4/pkg/protocol/handshake"

	"github.com/snowflake-go/snowflake/internal/fingerprint"
)

// Extension code points a shaped hello builds itself.
const (
	extSupportedGroups  uint16 = 0x000a
	extPointFormats     uint16 = 0x000b
	extSignatureAlgs    uint16 = 0x000d
	extUseSRTP          uint16 = 0x000e
	extALPN             uint16 = 0x0010
	extEMS              uint16 = 0x0017
	extSupportedVersion uint16 = 0x002b
	extCookie           uint16 = 0x002c
	extPSKModes         uint16 = 0x002d
	extKeyShare         uint16 = 0x0033
	extConnectionID     uint16 = 0x0036
	extRenegotiation    uint16 = 0xff01
	extPreSharedKey     uint16 = 0x0029
	extEarlyData        uint16 = 0x002a
)

// Named groups whose key shares a shaped hello can generate.
const (
	groupX25519         uint16 = 0x001d
	groupP256           uint16 = 0x0017
	groupP384           uint16 = 0x0018
	groupX25519MLKEM768 uint16 = 0x11ec
)

// pionGroups are the named groups pion/dtls v4 implements.
var pionGroups = []uint16{groupX25519MLKEM768, groupX25519, groupP256, groupP384}

// Profile is the shape of one browser's DTLS ClientHello: everything a
// fingerprint sees except the per-connection values (random, key shares,
// cookie), which are generated or kept from the stack.
type Profile struct {
	Name string
	// CipherSuites in wire order.
	CipherSuites []uint16
	// Extensions lists the extension types in one order the browser sends.
	Extensions []uint16
	// PermuteExtensions: the browser sends its extensions in a fresh
	// random order on every connection (Chromium since version 110).
	PermuteExtensions bool
	SupportedGroups   []uint16
	// KeyShareGroups are the groups the first hello carries key shares for.
	KeyShareGroups      []uint16
	SignatureAlgorithms []uint16
	SRTPProfiles        []uint16
	SupportedVersions   []uint16
	PointFormats        []byte
	PSKModes            []byte
	// Raw holds the data of extensions copied verbatim (those not listed
	// above, such as a record_size_limit).
	Raw map[uint16][]byte
}

// Chromium returns the shape of Chromium 156's DTLS ClientHello, as
// captured on loopback from an RTCPeerConnection opening a data channel:
// JA4 dd3i140900_fa23b50283d1_01b4b87481e4.
func Chromium() Profile {
	return Profile{
		Name: "chromium-156",
		CipherSuites: []uint16{
			0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xcca9, 0xcca8,
			0xc009, 0xc013, 0xc00a, 0xc014, 0x009c, 0x002f, 0x0035,
		},
		Extensions: []uint16{
			extPointFormats, extUseSRTP, extSupportedGroups, extRenegotiation, extPSKModes,
			extEMS, extKeyShare, extSignatureAlgs, extSupportedVersion,
		},
		PermuteExtensions:   true,
		SupportedGroups:     []uint16{groupX25519MLKEM768, groupX25519, groupP256, groupP384},
		KeyShareGroups:      []uint16{groupX25519MLKEM768, groupX25519},
		SignatureAlgorithms: []uint16{0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201},
		SRTPProfiles:        []uint16{0x0001, 0x0008, 0x0007},
		SupportedVersions:   []uint16{0xfefc, 0xfefd},
		PointFormats:        []byte{0},
		PSKModes:            []byte{1},
	}
}

// requiredCipherSuite, ECDHE-ECDSA-AES128-GCM-SHA256, is the one suite
// every pion/dtls version (v2 in Snowflake 2.5 to v3 now) implements with
// the ECDSA certificates all Snowflake peers use. A profile must offer it,
// or a deployed peer could fail to complete a handshake with it.
const requiredCipherSuite = 0xc02b

// ProfileFromClientHello builds a profile from a captured DTLS
// ClientHello given in hex (upstream's covertdtls-fingerprint): a whole
// record, a handshake message, or a ClientHello body. The hello must
// offer DTLS 1.2 with a cipher suite and group pion implements, or the
// peers could not complete a handshake.
func ProfileFromClientHello(hexHello string) (Profile, error) {
	b, err := hex.DecodeString(strings.TrimSpace(hexHello))
	if err != nil {
		return Profile{}, fmt.Errorf("dtlsshape: fingerprint: %w", err)
	}
	ch, err := parseAnyClientHello(b)
	if err != nil {
		return Profile{}, fmt.Errorf("dtlsshape: fingerprint: %w", err)
	}
	p := Profile{
		Name:                "fingerprint",
		CipherSuites:        ch.CipherSuites,
		SupportedGroups:     ch.SupportedGroups,
		SignatureAlgorithms: ch.SignatureAlgorithms,
		SupportedVersions:   ch.SupportedVersions,
		PointFormats:        ch.ECPointFormats,
		Raw:                 map[uint16][]byte{},
	}
	seen := map[uint16]bool{}
	for _, e := range ch.Extensions {
		if seen[e.Type] {
			return Profile{}, fmt.Errorf("dtlsshape: fingerprint: extension %#04x appears twice", e.Type)
		}
		seen[e.Type] = true
		switch e.Type {
		case extCookie, extPreSharedKey, extEarlyData, extConnectionID, extALPN:
			// Per-connection or resumption state of the captured
			// connection; never replayed.
			continue
		case extKeyShare:
			for _, ks := range ch.KeyShares {
				if !slices.Contains(pionGroups, ks.Group) {
					return Profile{}, fmt.Errorf("dtlsshape: fingerprint: key share for unsupported group %#04x", ks.Group)
				}
				p.KeyShareGroups = append(p.KeyShareGroups, ks.Group)
			}
		case extUseSRTP:
			if p.SRTPProfiles, err = parseSRTP(e.Data); err != nil {
				return Profile{}, fmt.Errorf("dtlsshape: fingerprint: use_srtp: %w", err)
			}
		case extPSKModes:
			if len(e.Data) < 1 || int(e.Data[0]) != len(e.Data)-1 {
				return Profile{}, errors.New("dtlsshape: fingerprint: malformed psk_key_exchange_modes")
			}
			p.PSKModes = append([]byte(nil), e.Data[1:]...)
		case extSupportedGroups, extPointFormats, extSignatureAlgs, extSupportedVersion, extEMS, extRenegotiation:
		default:
			p.Raw[e.Type] = append([]byte(nil), e.Data...)
		}
		p.Extensions = append(p.Extensions, e.Type)
	}
	if err := p.validate(); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// validate reports a profile no deployed peer could complete a DTLS 1.2
// handshake with.
func (p Profile) validate() error {
	if !slices.Contains(p.CipherSuites, requiredCipherSuite) {
		return errors.New("dtlsshape: profile lacks ECDHE-ECDSA-AES128-GCM-SHA256, the one suite every Snowflake peer implements")
	}
	if !slices.Contains(p.Extensions, extEMS) {
		return errors.New("dtlsshape: profile lacks extended_master_secret, which Snowflake peers require")
	}
	if len(p.SupportedVersions) > 0 && !slices.Contains(p.SupportedVersions, fingerprint.VersionDTLS12) {
		return errors.New("dtlsshape: profile does not offer DTLS 1.2")
	}
	if !slices.ContainsFunc(p.SupportedGroups, func(g uint16) bool { return g == groupX25519 || g == groupP256 || g == groupP384 }) {
		return errors.New("dtlsshape: profile offers no elliptic curve DTLS 1.2 peers implement")
	}
	if !slices.Contains(p.SignatureAlgorithms, 0x0403) {
		return errors.New("dtlsshape: profile lacks ecdsa_secp256r1_sha256, the signature of every Snowflake certificate")
	}
	if !slices.Contains(p.SRTPProfiles, 0x0001) && !slices.Contains(p.SRTPProfiles, 0x0007) {
		return errors.New("dtlsshape: profile offers neither SRTP profile that Snowflake 2.5 peers implement (0x0001, 0x0007)")
	}
	for _, s := range p.SRTPProfiles {
		if !slices.Contains([]uint16{0x0001, 0x0002, 0x0007, 0x0008}, s) {
			return fmt.Errorf("dtlsshape: profile offers SRTP profile %#04x, which pion does not implement", s)
		}
	}
	for _, g := range p.KeyShareGroups {
		if !slices.Contains(p.SupportedGroups, g) {
			return fmt.Errorf("dtlsshape: key share for group %#04x that supported_groups lacks", g)
		}
	}
	return p.checkRaw()
}

// checkRaw reports verbatim extension data pion would refuse to send. A
// shaped hello carries p.Raw as it is, and pion decodes a hooked hello
// again before sending it: one it cannot decode (a malformed
// signature_algorithms_cert, an extension not allowed in a ClientHello)
// fails the handshake of every connection.
func (p Profile) checkRaw() error {
	if len(p.Raw) == 0 {
		return nil
	}
	m := handshake.MessageClientHello{
		Version:            protocol.Version1_2,
		CipherSuiteIDs:     []uint16{requiredCipherSuite},
		CompressionMethods: []*protocol.CompressionMethod{{}},
	}
	for _, typ := range p.Extensions {
		if d, ok := p.Raw[typ]; ok {
			m.Extensions = append(m.Extensions, &extension.Raw{Type: extension.Type(typ), Data: d})
		}
	}
	b, err := m.Marshal()
	if err == nil {
		err = new(handshake.MessageClientHello).Unmarshal(b)
	}
	if err != nil {
		return fmt.Errorf("dtlsshape: profile extensions pion cannot send: %w", err)
	}
	return nil
}

// parseAnyClientHello accepts a DTLS record, a DTLS handshake message or
// a bare ClientHello body.
func parseAnyClientHello(b []byte) (*fingerprint.ClientHello, error) {
	if len(b) >= 13 && b[0] == 22 && b[1] == 0xfe {
		var r fingerprint.DatagramReassembler
		msgs, err := r.Add(b)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Type == fingerprint.TypeClientHello {
				return fingerprint.ParseClientHello(m.Body, true)
			}
		}
		return nil, errors.New("no complete ClientHello in the record")
	}
	if len(b) >= 12 && b[0] == fingerprint.TypeClientHello {
		n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		if n == len(b)-12 {
			return fingerprint.ParseClientHello(b[12:], true)
		}
	}
	return fingerprint.ParseClientHello(b, true)
}

func parseSRTP(d []byte) ([]uint16, error) {
	if len(d) < 3 {
		return nil, errors.New("too short")
	}
	n := int(d[0])<<8 | int(d[1])
	if n%2 != 0 || n == 0 || 2+n+1 > len(d) {
		return nil, errors.New("bad profile list length")
	}
	var out []uint16
	for i := 2; i < 2+n; i += 2 {
		out = append(out, uint16(d[i])<<8|uint16(d[i+1]))
	}
	mki := int(d[2+n])
	if 2+n+1+mki != len(d) {
		return nil, errors.New("bad MKI length")
	}
	return out, nil
}
