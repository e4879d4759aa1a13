// Package h2client is an HTTP/2 client that frames its connections and
// requests the way Chromium does, so that the rendezvous traffic behind a
// Chromium TLS ClientHello is not given away by Go's HTTP/2 fingerprint
// (its SETTINGS, window increment and pseudo-header order differ from
// every browser's).
//
// It is written for rendezvous-sized exchanges (small requests and
// responses, a few streams at a time) on top of golang.org/x/net/http2's
// Framer and hpack; the connection logic (settings, flow control, stream
// life cycle, GOAWAY, health-check PINGs) is this package's own.
package h2client

import (
	"net/http"
	"slices"
	"strings"

	"golang.org/x/net/http2"
)

// The connection preface of Chromium 156, measured against a local HTTP/2
// server (common/rendezvous's TestChromiumH2Fingerprint re-measures it):
// these four settings in this order, then a connection WINDOW_UPDATE that
// raises the receive window to 15 MiB. Akamai fingerprint:
// 1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p.
var chromiumSettings = []http2.Setting{
	{ID: http2.SettingHeaderTableSize, Val: 65536},
	{ID: http2.SettingEnablePush, Val: 0},
	{ID: http2.SettingInitialWindowSize, Val: streamWindow},
	{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderListSize},
}

// Receive windows and limits Chromium announces.
const (
	streamWindow      = 6291456  // per stream (6 MiB)
	connWindow        = 15 << 20 // per connection (15 MiB)
	connWindowUpdate  = connWindow - initialWindow
	maxHeaderListSize = 262144 // response header list (256 KiB)
	headerTableSize   = 65536  // HPACK decoder table
	initialWindow     = 65535  // RFC 9113's before any SETTINGS
	defaultFrameSize  = 16384  // RFC 9113's SETTINGS_MAX_FRAME_SIZE default
)

// Chromium gives fetch() requests its MEDIUM priority, which it sends as an
// exclusive dependency with weight 220 in the HEADERS frame (it sends no
// PRIORITY frames) and as RFC 9218's "u=1, i" priority header.
const (
	fetchWeight   = 220
	fetchPriority = "u=1, i"
)

// Request headers Chromium 156 adds to a fetch(). The brand list and
// platform are what Debian's Chromium sends (its user agent without the
// "Headless" of the headless mode).
const (
	userAgent      = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
	secCHUA        = `"Not:A-Brand";v="8", "Chromium";v="156"`
	secCHUAMobile  = "?0"
	secCHUAPlatfm  = `"Linux"`
	acceptAny      = "*/*"
	acceptEncoding = "gzip, deflate, br, zstd"
	acceptLanguage = "en-US,en;q=0.9"
	textPlainUTF8  = "text/plain;charset=UTF-8"
)

// headerOrder is the order in which Chromium writes a cross-origin fetch
// POST's regular headers (measured). origin, referer and the sec-fetch-*
// headers name the page that made the request; the rendezvous client has
// none, so it sends them only if the caller sets them. Headers not listed
// go after accept, where Chromium puts those a script adds.
var headerOrder = []string{
	"content-length",
	"sec-ch-ua-platform",
	"user-agent",
	"sec-ch-ua",
	"content-type",
	"sec-ch-ua-mobile",
	"accept",
	"", // the caller's other headers
	"origin",
	"sec-fetch-site",
	"sec-fetch-mode",
	"sec-fetch-dest",
	"referer",
	"accept-encoding",
	"accept-language",
	"priority",
}

// chromiumDefaults are the headers added to a request that does not set
// them itself.
var chromiumDefaults = [][2]string{
	{"sec-ch-ua-platform", secCHUAPlatfm},
	{"user-agent", userAgent},
	{"sec-ch-ua", secCHUA},
	{"sec-ch-ua-mobile", secCHUAMobile},
	{"accept", acceptAny},
	{"accept-encoding", acceptEncoding},
	{"accept-language", acceptLanguage},
	{"priority", fetchPriority},
}

// connectionHeaders are HTTP/1.1 connection-specific headers that
// HTTP/2 forbids (RFC 9113 §8.2.2); "host" becomes :authority.
var connectionHeaders = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "upgrade": true, "host": true,
}

// requestHeaders returns the regular header fields of req in Chromium's
// order, with Chromium's defaults for the ones req leaves out, and
// whether accept-encoding was added here (then this package undoes the
// content coding, as a browser does).
func requestHeaders(req *http.Request, bodyLen int64) (fields [][2]string, addedEncoding bool, err error) {
	have := make(map[string][]string, len(req.Header)+len(chromiumDefaults)+2)
	var extra []string // caller headers not in headerOrder, in sorted order
	for k, vs := range req.Header {
		name := strings.ToLower(k)
		if connectionHeaders[name] {
			continue
		}
		if name == "te" {
			// Only "trailers" is allowed (RFC 9113 §8.2.2).
			vs = filterTE(vs)
			if len(vs) == 0 {
				continue
			}
		}
		if !validHeaderName(name) {
			return nil, false, errInvalidHeader(k)
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return nil, false, errInvalidHeader(k)
			}
		}
		if _, dup := have[name]; !dup && !slices.Contains(headerOrder, name) {
			extra = append(extra, name)
		}
		have[name] = append(have[name], vs...)
	}
	sortStrings(extra)
	if _, ok := have["accept-encoding"]; !ok {
		addedEncoding = true
	}
	for _, d := range chromiumDefaults {
		if _, ok := have[d[0]]; !ok {
			have[d[0]] = []string{d[1]}
		}
	}
	// content-length comes from the body, never from the header map.
	delete(have, "content-length")
	if bodyLen >= 0 && (bodyLen > 0 || methodHasBody(req.Method)) {
		have["content-length"] = []string{itoa(bodyLen)}
	}
	if bodyLen > 0 {
		if _, ok := have["content-type"]; !ok {
			// What fetch() labels a string body with.
			have["content-type"] = []string{textPlainUTF8}
		}
	}
	fields = make([][2]string, 0, len(have)+len(extra))
	for _, name := range headerOrder {
		if name == "" {
			for _, e := range extra {
				for _, v := range have[e] {
					fields = append(fields, [2]string{e, v})
				}
			}
			continue
		}
		for _, v := range have[name] {
			fields = append(fields, [2]string{name, v})
		}
	}
	return fields, addedEncoding, nil
}

func methodHasBody(m string) bool {
	return m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch
}

func filterTE(vs []string) []string {
	var out []string
	for _, v := range vs {
		if strings.EqualFold(strings.TrimSpace(v), "trailers") {
			out = append(out, "trailers")
		}
	}
	return out
}
