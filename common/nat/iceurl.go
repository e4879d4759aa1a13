package nat

import (
	"fmt"
	"strings"

	"github.com/pion/stun/v4"
)

// CheckICEURL reports why a WebRTC peer connection would refuse s as a STUN
// server URL, or nil if it takes it. pion refuses a whole PeerConnection for
// one ICE URL it cannot parse, so client and proxy check each URL first and
// drop or refuse it instead. The query of such a URL (?transport=udp) is
// ignored by pion's PeerConnection, though its URL parser alone refuses it,
// so it is ignored here too. Only stun: and stuns: are taken: TURN needs
// credentials that a list of URLs does not carry.
func CheckICEURL(s string) error {
	withoutQuery, _, _ := strings.Cut(s, "?")
	u, err := stun.ParseURI(withoutQuery)
	if err != nil {
		return fmt.Errorf("nat: %q: %w", s, err)
	}
	if u.Scheme != stun.SchemeTypeSTUN && u.Scheme != stun.SchemeTypeSTUNS {
		return fmt.Errorf("nat: %q is not a stun: or stuns: URL", s)
	}
	return nil
}
