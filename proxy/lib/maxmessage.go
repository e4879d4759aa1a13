package proxy

import (
	"strconv"
	"strings"
)

// offerMessageLimit returns the longest message the proxy may send to the
// client whose offer is sdp: maxDCMessage, or less if the offer's data
// section (m=application) announces a smaller max-message-size. Following
// RFC 8841, an absent attribute means 64 KiB and 0 means any size, both at
// least maxDCMessage. A browser may read a repeated attribute, or one with
// stray blanks, otherwise than this does; a shorter message is never
// refused, so the smallest value wins. One that is not a number announces
// nothing.
func offerMessageLimit(sdp string) int {
	limit := maxDCMessage
	data := false
	for line := range strings.Lines(sdp) {
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "m=") {
			data = strings.HasPrefix(line, "m=application ")
			continue
		}
		v, ok := strings.CutPrefix(line, "a=max-message-size:")
		if !data || !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil && n > 0 && n < uint64(limit) {
			limit = int(n)
		}
	}
	return limit
}
