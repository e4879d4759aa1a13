package fingerprint

import (
	"fmt"
	"strings"
)

// Names for the code points that commonly appear in browser and WebRTC
// hellos, for readable summaries; anything else prints as hex.
var (
	versionNames = map[uint16]string{
		VersionTLS10: "TLS1.0", VersionTLS11: "TLS1.1", VersionTLS12: "TLS1.2", VersionTLS13: "TLS1.3",
		VersionDTLS10: "DTLS1.0", VersionDTLS12: "DTLS1.2", VersionDTLS13: "DTLS1.3",
	}
	cipherNames = map[uint16]string{
		0x1301: "AES128-GCM-SHA256", 0x1302: "AES256-GCM-SHA384", 0x1303: "CHACHA20-POLY1305-SHA256",
		0xc02b: "ECDHE-ECDSA-AES128-GCM", 0xc02f: "ECDHE-RSA-AES128-GCM",
		0xc02c: "ECDHE-ECDSA-AES256-GCM", 0xc030: "ECDHE-RSA-AES256-GCM",
		0xcca9: "ECDHE-ECDSA-CHACHA20", 0xcca8: "ECDHE-RSA-CHACHA20",
		0xc009: "ECDHE-ECDSA-AES128-SHA", 0xc00a: "ECDHE-ECDSA-AES256-SHA",
		0xc013: "ECDHE-RSA-AES128-SHA", 0xc014: "ECDHE-RSA-AES256-SHA",
		0x009c: "RSA-AES128-GCM", 0x009d: "RSA-AES256-GCM", 0x002f: "RSA-AES128-SHA", 0x0035: "RSA-AES256-SHA",
		0xc0ac: "ECDHE-ECDSA-AES128-CCM", 0xc0ae: "ECDHE-ECDSA-AES128-CCM8", 0x00a8: "PSK-AES128-GCM",
	}
	extensionNames = map[uint16]string{
		0x0000: "server_name", 0x0005: "status_request", 0x000a: "supported_groups",
		0x000b: "ec_point_formats", 0x000d: "signature_algorithms", 0x000e: "use_srtp",
		0x0010: "alpn", 0x0012: "signed_certificate_timestamp", 0x0015: "padding",
		0x0016: "encrypt_then_mac", 0x0017: "extended_master_secret", 0x001b: "compress_certificate",
		0x0023: "session_ticket", 0x0029: "pre_shared_key", 0x0032: "signature_algorithms_cert", 0x002a: "early_data",
		0x002b: "supported_versions", 0x002c: "cookie", 0x002d: "psk_key_exchange_modes",
		0x0033: "key_share", 0x0036: "connection_id", 0x44cd: "application_settings",
		0xca34: "trust_anchors", 0xfe0d: "encrypted_client_hello", 0xff01: "renegotiation_info",
	}
	groupNames = map[uint16]string{
		0x0017: "P-256", 0x0018: "P-384", 0x0019: "P-521", 0x001d: "x25519", 0x001e: "x448",
		0x11ec: "X25519MLKEM768", 0x11eb: "SecP256r1MLKEM768", 0x11ed: "SecP384r1MLKEM1024", 0x6399: "X25519Kyber768Draft00",
	}
)

func named(m map[uint16]string, v uint16) string {
	if IsGREASE(v) {
		return "GREASE"
	}
	if n, ok := m[v]; ok {
		return n
	}
	return fmt.Sprintf("0x%04x", v)
}

// VersionName names a protocol version ("DTLS1.2", or hex when unknown).
func VersionName(v uint16) string { return named(versionNames, v) }

// CipherName names a cipher suite (OpenSSL-like short names, or hex).
func CipherName(v uint16) string { return named(cipherNames, v) }

// ExtensionName names an extension type (IANA names, or hex).
func ExtensionName(v uint16) string { return named(extensionNames, v) }

// GroupName names a supported group (or hex).
func GroupName(v uint16) string { return named(groupNames, v) }

func joinNames(vs []uint16, name func(uint16) string) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = name(v)
	}
	return strings.Join(parts, ",")
}

func extNames(vs []uint16) string { return joinNames(vs, ExtensionName) }

// String is a readable multi-field summary of the hello, in wire order.
func (c *ClientHello) String() string {
	var b strings.Builder
	kind := "TLS"
	if c.DTLS {
		kind = "DTLS"
	}
	fmt.Fprintf(&b, "%s ClientHello length=%d record=%s legacy=%s", kind, c.Length, VersionName(c.RecordVersion), VersionName(c.LegacyVersion))
	if len(c.SupportedVersions) > 0 {
		fmt.Fprintf(&b, " versions=[%s]", joinNames(c.SupportedVersions, VersionName))
	}
	if c.HasServerName {
		fmt.Fprintf(&b, " sni=%q", c.ServerName)
	}
	if len(c.ALPN) > 0 {
		fmt.Fprintf(&b, " alpn=[%s]", strings.Join(c.ALPN, ","))
	}
	fmt.Fprintf(&b, " session_id=%dB", len(c.SessionID))
	if c.DTLS {
		fmt.Fprintf(&b, " cookie=%dB", len(c.Cookie))
	}
	fmt.Fprintf(&b, " ciphers=[%s]", joinNames(c.CipherSuites, CipherName))
	fmt.Fprintf(&b, " extensions=[%s]", extNames(extensionTypes(c.Extensions)))
	if len(c.SupportedGroups) > 0 {
		fmt.Fprintf(&b, " groups=[%s]", joinNames(c.SupportedGroups, GroupName))
	}
	if len(c.KeyShares) > 0 {
		parts := make([]string, len(c.KeyShares))
		for i, k := range c.KeyShares {
			parts[i] = fmt.Sprintf("%s:%dB", GroupName(k.Group), k.KeyLen)
		}
		fmt.Fprintf(&b, " key_shares=[%s]", strings.Join(parts, ","))
	}
	if len(c.SignatureAlgorithms) > 0 {
		fmt.Fprintf(&b, " sigalgs=[%s]", hexList(c.SignatureAlgorithms))
	}
	return b.String()
}

// String is a readable summary of the ServerHello.
func (s *ServerHello) String() string {
	kind := "TLS"
	if s.DTLS {
		kind = "DTLS"
	}
	name := "ServerHello"
	if s.HelloRetryRequest {
		name = "HelloRetryRequest"
	}
	out := fmt.Sprintf("%s %s record=%s legacy=%s selected=%s cipher=%s session_id=%dB extensions=[%s]",
		kind, name, VersionName(s.RecordVersion), VersionName(s.LegacyVersion), VersionName(s.SelectedVersion),
		CipherName(s.CipherSuite), len(s.SessionID), extNames(extensionTypes(s.Extensions)))
	if s.ALPN != "" {
		out += " alpn=" + s.ALPN
	}
	if s.KeyShareGroup != 0 {
		out += " key_share=" + GroupName(s.KeyShareGroup)
	}
	return out
}

// String is a readable summary of the HelloVerifyRequest.
func (h *HelloVerifyRequest) String() string {
	return fmt.Sprintf("DTLS HelloVerifyRequest record=%s version=%s cookie=%dB",
		VersionName(h.RecordVersion), VersionName(h.ServerVersion), len(h.Cookie))
}

// String names the hello and its direction.
func (h Hello) String() string {
	var what fmt.Stringer
	switch {
	case h.Client != nil:
		what = h.Client
	case h.Server != nil:
		what = h.Server
	case h.Verify != nil:
		what = h.Verify
	default:
		return fmt.Sprintf("%s -> %s: (empty)", h.Src, h.Dst)
	}
	return fmt.Sprintf("%s -> %s: %s", h.Src, h.Dst, what)
}
