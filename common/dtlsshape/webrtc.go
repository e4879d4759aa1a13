//go:build !js

package dtlsshape

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/pion/dtls/v4"
	dtlselliptic "github.com/pion/dtls/v4/pkg/crypto/elliptic"
	"github.com/pion/dtls/v4/pkg/protocol"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/webrtcapi"
	"github.com/snowflake-go/snowflake/internal/fingerprint"
)

// Apply configures se so that every PeerConnection made with it shapes
// its DTLS handshake by mode: the ClientHello (when the peer is the DTLS
// client, as the proxy is) and the version of the records carrying it,
// the groups it offers key shares for (X25519MLKEM768 and x25519 in the
// first flight, as Chromium), the SRTP profiles it accepts, and, when it
// is the DTLS server, no HelloVerifyRequest (Chromium sends none) and a
// DTLS 1.3 ServerHello in BoringSSL's extension order with a fully random
// Random. profile nil means Chromium(). The peer's sockets come from
// inner (nil: the operating system's) as webrtcapi.Net makes them, with
// large receive buffers, and are wrapped to rewrite hello records;
// callers must not call se.SetNet afterwards. Disable leaves pion's DTLS
// defaults and installs the sockets unwrapped. Per-connection ICE
// credentials are set apart, through ICECredentials.
func Apply(se *webrtc.SettingEngine, mode Mode, profile *Profile, inner transport.Net) error {
	n, err := Net(mode, inner)
	if err != nil {
		return err
	}
	if mode != Disable {
		if err := apply(se, mode, profile); err != nil {
			return err
		}
	}
	se.SetNet(n)
	return nil
}

// Net returns the network Apply installs for mode, with opts for
// webrtcapi.Net. A caller that needs sockets of its own for one
// PeerConnection installs such a network on its copy of the settings.
func Net(mode Mode, inner transport.Net, opts ...webrtcapi.Option) (transport.Net, error) {
	if mode == Disable {
		n, err := webrtcapi.Net(inner, opts...)
		if err != nil {
			return nil, fmt.Errorf("dtlsshape: %w", err)
		}
		return n, nil
	}
	return WrapNet(inner, opts...)
}

func apply(se *webrtc.SettingEngine, mode Mode, profile *Profile) error {
	p := Chromium()
	if profile != nil {
		p = *profile
	}
	if err := p.validate(); err != nil {
		return err
	}
	switch mode {
	case Mimic, RandomizeMimic, Randomize:
	default:
		return fmt.Errorf("dtlsshape: unknown mode %v", mode)
	}
	s := newShaper(mode, p)
	se.SetDTLSClientHelloMessageHook(s.clientHello)
	se.SetDTLSServerHelloMessageHook(serverHello)
	se.SetDTLSInsecureSkipHelloVerify(true)
	if mode != Randomize {
		se.SetDTLSEllipticCurves(p.curves()...)
		profiles := make([]dtls.SRTPProtectionProfile, len(p.SRTPProfiles))
		for i, v := range p.SRTPProfiles {
			profiles[i] = dtls.SRTPProtectionProfile(v)
		}
		se.SetSRTPProtectionProfiles(profiles...)
		if !p.offersDTLS13() {
			// The shaped hello offers DTLS 1.2 only. pion, left at
			// DTLS 1.3, would reject the downgrade sentinel that a
			// DTLS 1.3 server (a peer of this version) puts in the
			// DTLS 1.2 ServerHello it answers such a hello with.
			se.SetDTLSMaxVersion(protocol.Version1_2)
		}
	}
	return nil
}

// offersDTLS13 reports whether a hello shaped by p offers DTLS 1.3: it
// lists supported_versions with DTLS 1.3 and key_share. Without both,
// mimic sends a DTLS 1.2 hello (pion rejects one offering DTLS 1.3
// without key shares).
func (p Profile) offersDTLS13() bool {
	return slices.Contains(p.Extensions, extSupportedVersion) && slices.Contains(p.Extensions, extKeyShare) &&
		slices.Contains(p.SupportedVersions, fingerprint.VersionDTLS13)
}

// CertificateLifetime is the validity of a browser's WebRTC certificate:
// Chromium's starts a day in the past and ends 30 days ahead.
const CertificateLifetime = 31 * 24 * time.Hour

// Certificates returns the certificates for one PeerConnection in mode:
// a fresh browser-like one, or nil under Disable (pion then makes its
// own, with a 130-bit serial and a month of validity).
func Certificates(mode Mode) ([]webrtc.Certificate, error) {
	if mode == Disable {
		return nil, nil
	}
	c, err := Certificate(time.Now())
	if err != nil {
		return nil, err
	}
	return []webrtc.Certificate{*c}, nil
}

// Certificate returns a new self-signed certificate shaped like the one
// Chromium makes for each RTCPeerConnection: ECDSA P-256, subject and
// issuer CN=WebRTC, a random serial of at most 64 bits, valid from a day
// before now for CertificateLifetime.
func Certificate(now time.Time) (*webrtc.Certificate, error) {
	key, cert, err := newCertificate(now)
	if err != nil {
		return nil, err
	}
	c := webrtc.CertificateFromX509(key, cert)
	return &c, nil
}

func newCertificate(now time.Time) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("dtlsshape: certificate key: %w", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, nil, fmt.Errorf("dtlsshape: certificate serial: %w", err)
	}
	// Chromium's serials are uniform 64-bit values (captured: 62 to 64
	// bits); zero is not a valid serial.
	serial := new(big.Int).SetUint64(max(binary.BigEndian.Uint64(b[:]), 1))
	name := pkix.Name{CommonName: "WebRTC"}
	notBefore := now.Add(-24 * time.Hour).UTC().Truncate(time.Second)
	tpl := &x509.Certificate{
		SerialNumber:       serial,
		Subject:            name,
		Issuer:             name,
		NotBefore:          notBefore,
		NotAfter:           notBefore.Add(CertificateLifetime),
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("dtlsshape: certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("dtlsshape: certificate: %w", err)
	}
	return key, cert, nil
}

// curves is the group preference handed to pion: the key share groups
// first, since pion sends shares for its first group (and x25519 with an
// X25519MLKEM768 first), then the profile's other groups. The hello's
// supported_groups list itself is the profile's.
func (p Profile) curves() []dtlselliptic.Curve {
	var out []dtlselliptic.Curve
	for _, g := range append(slices.Clone(p.KeyShareGroups), p.SupportedGroups...) {
		c := dtlselliptic.Curve(g)
		if slices.Contains(pionGroups, g) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// Chromium's ICE credentials: a 4-character username fragment and a
// 24-character password drawn from the 64 ICE characters (RFC 8839
// ice-char), where pion draws 16 and 32 letters.
const (
	iceUfragLength = 4
	icePwdLength   = 24
	iceChars       = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// ICECredentials returns the function that gives each PeerConnection
// fresh browser-shaped ICE credentials (for webrtcapi.NewFactory), or nil
// under Disable, where pion draws its own.
func ICECredentials(mode Mode) func(*webrtc.SettingEngine) error {
	if mode == Disable {
		return nil
	}
	return setICECredentials
}

func setICECredentials(se *webrtc.SettingEngine) error {
	ufrag, err := iceString(iceUfragLength)
	if err != nil {
		return err
	}
	pwd, err := iceString(icePwdLength)
	if err != nil {
		return err
	}
	se.SetICECredentials(ufrag, pwd)
	return nil
}

// iceString returns n random ICE characters. 64 characters make each one
// exactly 6 random bits.
func iceString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("dtlsshape: ICE credentials: %w", err)
	}
	for i := range b {
		b[i] = iceChars[b[i]&63]
	}
	return string(b), nil
}
