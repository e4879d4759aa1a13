package amp

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/net/idna"
)

// maxLabelLength is the DNS label limit that a cache subdomain must respect.
const maxLabelLength = 63

// idnaProfile converts between Unicode and ASCII host names without the
// hyphen checks: the "--" produced by doubling hyphens is legal here.
var idnaProfile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.CheckHyphens(false))

// domainPrefix returns the cache subdomain for a publisher host name, using
// the readable form when it is a valid label and the hash form otherwise.
func domainPrefix(host string) string {
	if p, ok := readablePrefix(host); ok {
		return p
	}
	return hashPrefix(host)
}

func readablePrefix(host string) (string, bool) {
	u, err := idnaProfile.ToUnicode(host)
	if err != nil {
		return "", false
	}
	u = strings.ReplaceAll(u, "-", "--")
	u = strings.ReplaceAll(u, ".", "-")
	if len(u) >= 4 && u[2:4] == "--" {
		// A "--" at positions 3-4 would look like a punycode marker.
		u = "0-" + u + "-0"
	}
	a, err := idnaProfile.ToASCII(u)
	if err != nil || a == "" || len(a) > maxLabelLength || strings.Contains(a, ".") {
		return "", false
	}
	return a, true
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func hashPrefix(host string) string {
	sum := sha256.Sum256([]byte(host))
	return lowerBase32.EncodeToString(sum[:])
}

// CacheURL returns the URL under which the AMP cache at cacheURL serves the
// publisher URL pubURL, for a content type such as "c" (HTML document).
func CacheURL(pubURL, cacheURL *url.URL, contentType string) (*url.URL, error) {
	if pubURL.Scheme != "http" && pubURL.Scheme != "https" {
		return nil, fmt.Errorf("amp: publisher URL scheme %q is not http or https", pubURL.Scheme)
	}
	if pubURL.Host == "" || cacheURL.Host == "" {
		return nil, fmt.Errorf("amp: publisher and cache URLs need a host")
	}
	if contentType == "" || strings.Contains(contentType, "/") {
		return nil, fmt.Errorf("amp: invalid content type %q", contentType)
	}
	u := *cacheURL
	u.User = nil
	u.Host = domainPrefix(pubURL.Hostname()) + "." + cacheURL.Host
	path := strings.TrimSuffix(cacheURL.Path, "/") + "/" + contentType
	if pubURL.Scheme == "https" {
		path += "/s"
	}
	// The publisher's path goes in as it is, escaped once: Path holds it
	// decoded and RawPath keeps its original escaping (for "%2F", say).
	u.Path = path + "/" + pubURL.Host + pubURL.Path
	u.RawPath = path + "/" + pubURL.Host + pubURL.EscapedPath()
	u.RawQuery = pubURL.RawQuery
	u.Fragment = pubURL.Fragment
	return &u, nil
}
