// Package dtlsshape makes the DTLS handshakes of Snowflake's pion peers
// look like a browser's WebRTC.
//
// Censors have blocked Snowflake by its DTLS handshake alone (pion's
// default ClientHello, its HelloVerifyRequest, its certificates), so the
// standalone proxy and the client shape theirs after Chromium's. The shape
// is chosen by a Mode, named as upstream's covertdtls-config option.
//
// The stack is pion/webrtc v5 with pion/dtls v4, which implements DTLS
// 1.3. In the default mode the ClientHello offers what Chromium offers
// (DTLS 1.3 and 1.2, the TLS 1.3 cipher suites, X25519MLKEM768 and x25519
// key shares that pion generated and can use), so its JA4 equals
// Chromium's; peers of this version complete DTLS 1.3 on the first
// flight, and every deployed Snowflake peer (pion/dtls v2 and v3)
// negotiates DTLS 1.2, the only version both ends implement.
package dtlsshape

import (
	"fmt"
	"strings"
)

// Mode selects how a peer's DTLS hello is shaped.
type Mode int

const (
	// Mimic sends Chromium's ClientHello (the default): its cipher suites,
	// extensions, groups, key shares and signature algorithms, with the
	// extension order permuted per connection as Chromium does.
	Mimic Mode = iota
	// Randomize keeps pion's own offer but shuffles and trims its lists
	// and its extension order per connection, so no fixed fingerprint
	// exists.
	Randomize
	// RandomizeMimic starts from the mimicked browser hello and shuffles
	// the lists Chromium keeps in a fixed order (groups, signature
	// algorithms, SRTP profiles, the non-TLS-1.3 cipher suites).
	RandomizeMimic
	// Disable leaves pion's handshake as it is (upstream's default).
	Disable
)

// DefaultMode is the closest browser shape.
const DefaultMode = Mimic

var modeNames = map[Mode]string{
	Mimic:          "mimic",
	Randomize:      "randomize",
	RandomizeMimic: "randomizemimic",
	Disable:        "disable",
}

// String returns the mode's option value.
func (m Mode) String() string {
	if s, ok := modeNames[m]; ok {
		return s
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses a covertdtls-config value. The empty string means
// DefaultMode; case and surrounding space are ignored, as upstream does.
func ParseMode(s string) (Mode, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "" {
		return DefaultMode, nil
	}
	for m, name := range modeNames {
		if v == name {
			return m, nil
		}
	}
	return 0, fmt.Errorf("dtlsshape: unknown covertdtls-config %q (want mimic, randomize, randomizemimic or disable)", s)
}
