package rendezvous

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"

	utls "github.com/refraction-networking/utls"
)

// ChromeName is the utls-imitate name of the built-in Chromium 156
// ClientHello, which is also what the client sends when the bridge line
// names none.
const ChromeName = "hellochrome_156"

// helloChrome156 marks connections that are built from [ChromeSpec]. It is
// not a uTLS preset: uTLS 1.8.2's newest Chrome (HelloChrome_Auto, Chrome
// 133) lacks the trust_anchors extension and the ML-DSA signature
// algorithms, so its JA4 (t13d1516h2_8daaf6152771_d8a2da3f94cd) matches no
// current browser.
var helloChrome156 = utls.ClientHelloID{Client: "Chrome", Version: "156-spec"}

// chromeTrustAnchors is the hex of the trust_anchors (0xca34,
// draft-ietf-tls-trust-anchor-ids) payload Chromium 156 sends: a length-prefixed list of the
// trust anchor IDs of its root store, as captured from Debian's
// chromium 156.0.8078.108. It is the same in every connection.
const chromeTrustAnchors = "00b8" +
	"0582df130201" + "0582df130206" + "0582df13020d" + "0582df13020e" + "0582df13020f" +
	"0582df130212" + "0582df130213" + "0582df130214" +
	"08839a648c9b2d0107" + "08839a648c9b2d0108" + "08839a648c9b2d0109" + "08839a648c9b2d010a" +
	"08839a648c9b2d010b" + "08839a648c9b2d010c" + "08839a648c9b2d010d" + "08839a648c9b2d0112" +
	"08839a648c9b2d0113" +
	"04d6790901" + "04d6790904" + "04d6790905" + "04d6790906" + "04d6790907" + "04d6790908" +
	"04d679090a" + "04d679090b" + "04d679090c" + "04d679090d" + "04d679090f"

// Signature schemes Chromium 156 offers besides the classic ones:
// ML-DSA-44, -65 and -87 (draft-ietf-tls-mldsa).
const (
	mldsa44 utls.SignatureScheme = 0x0904
	mldsa65 utls.SignatureScheme = 0x0905
	mldsa87 utls.SignatureScheme = 0x0906
)

// randomGREASE returns one of the 16 RFC 8701 GREASE values.
func randomGREASE() (uint16, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(16))
	if err != nil {
		return 0, err
	}
	return 0x0a0a + 0x1010*uint16(n.Int64()), nil
}

// permute shuffles exts uniformly (Fisher–Yates with crypto/rand), as
// BoringSSL permutes a ClientHello's extensions once per connection.
// uTLS's ShuffleChromeTLSExtensions skips swaps that touch a fixed entry,
// which biases the order; here the fixed GREASE entries are simply left
// out of the slice.
func permute(exts []utls.TLSExtension) error {
	for i := len(exts) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return err
		}
		exts[i], exts[j.Int64()] = exts[j.Int64()], exts[i]
	}
	return nil
}

// ChromeSpec returns a new ClientHelloSpec shaped like Chromium 156's
// HTTPS ClientHello (measured on loopback with tshark; JA4
// t13d1517h2_8daaf6152771_cb7bf5808d99): GREASE in ciphers, groups, key
// shares, versions, signature algorithms and as first and last extension;
// the other 17 extensions in a fresh random order; an X25519MLKEM768 key
// share next to x25519; ALPN h2 and http/1.1; a GREASE ECH extension.
// Call it once per connection: the permutation and the GREASE values must
// differ between connections, as Chromium's do.
func ChromeSpec() (*utls.ClientHelloSpec, error) {
	sigGREASE, err := randomGREASE()
	if err != nil {
		return nil, fmt.Errorf("rendezvous: chrome hello: %w", err)
	}
	anchors, err := hex.DecodeString(chromeTrustAnchors)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: chrome hello: trust anchors: %w", err)
	}
	middle := []utls.TLSExtension{
		&utls.SNIExtension{},
		&utls.ExtendedMasterSecretExtension{},
		&utls.RenegotiationInfoExtension{Renegotiation: utls.RenegotiateOnceAsClient},
		&utls.SupportedCurvesExtension{Curves: []utls.CurveID{
			utls.GREASE_PLACEHOLDER, utls.X25519MLKEM768, utls.X25519, utls.CurveP256, utls.CurveP384,
		}},
		&utls.SupportedPointsExtension{SupportedPoints: []byte{0}}, // uncompressed
		&utls.SessionTicketExtension{},
		&utls.ALPNExtension{AlpnProtocols: []string{"h2", "http/1.1"}},
		&utls.StatusRequestExtension{},
		&utls.SignatureAlgorithmsExtension{SupportedSignatureAlgorithms: []utls.SignatureScheme{
			utls.SignatureScheme(sigGREASE),
			mldsa44, mldsa65, mldsa87,
			utls.ECDSAWithP256AndSHA256, utls.PSSWithSHA256, utls.PKCS1WithSHA256,
			utls.ECDSAWithP384AndSHA384, utls.PSSWithSHA384, utls.PKCS1WithSHA384,
			utls.PSSWithSHA512, utls.PKCS1WithSHA512,
		}},
		&utls.SCTExtension{},
		&utls.KeyShareExtension{KeyShares: []utls.KeyShare{
			{Group: utls.GREASE_PLACEHOLDER, Data: []byte{0}},
			{Group: utls.X25519MLKEM768},
			{Group: utls.X25519},
		}},
		&utls.PSKKeyExchangeModesExtension{Modes: []uint8{utls.PskModeDHE}},
		&utls.SupportedVersionsExtension{Versions: []uint16{
			utls.GREASE_PLACEHOLDER, utls.VersionTLS13, utls.VersionTLS12,
		}},
		&utls.UtlsCompressCertExtension{Algorithms: []utls.CertCompressionAlgo{utls.CertCompressionBrotli}},
		&utls.ApplicationSettingsExtensionNew{SupportedProtocols: []string{"h2"}},
		&utls.GenericExtension{Id: 0xca34, Data: anchors},
		utls.BoringGREASEECH(),
	}
	if err := permute(middle); err != nil {
		return nil, fmt.Errorf("rendezvous: chrome hello: %w", err)
	}
	exts := append([]utls.TLSExtension{&utls.UtlsGREASEExtension{}}, middle...)
	exts = append(exts, &utls.UtlsGREASEExtension{})
	return &utls.ClientHelloSpec{
		CipherSuites: []uint16{
			utls.GREASE_PLACEHOLDER,
			utls.TLS_AES_128_GCM_SHA256, utls.TLS_AES_256_GCM_SHA384, utls.TLS_CHACHA20_POLY1305_SHA256,
			utls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, utls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			utls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, utls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			utls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, utls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
			utls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, utls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
			utls.TLS_RSA_WITH_AES_128_GCM_SHA256, utls.TLS_RSA_WITH_AES_256_GCM_SHA384,
			utls.TLS_RSA_WITH_AES_128_CBC_SHA, utls.TLS_RSA_WITH_AES_256_CBC_SHA,
		},
		CompressionMethods: []byte{0},
		Extensions:         exts,
	}, nil
}
