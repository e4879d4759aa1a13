package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/snowflake-go/snowflake/common/amp"
)

// AMP is the rendezvous method through an AMP cache: the poll request is
// encoded into the path of a GET to the cache's URL for the broker, and the
// response comes back armored in an AMP HTML page.
type AMP struct {
	brokerURL *url.URL
	cacheURL  *url.URL
	fronts    []string
	client    *http.Client
}

// NewAMP returns the AMP method for the broker at brokerURL behind the cache
// at cacheURL (e.g. "https://cdn.ampproject.org/"). rt carries the requests.
func NewAMP(brokerURL, cacheURL string, fronts []string, rt http.RoundTripper) (*AMP, error) {
	b, err := parseBaseURL(brokerURL)
	if err != nil {
		return nil, err
	}
	c, err := url.Parse(cacheURL)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: ampcache URL: %w", err)
	}
	if (c.Scheme != "http" && c.Scheme != "https") || c.Host == "" {
		return nil, fmt.Errorf("rendezvous: ampcache URL %q: need an http(s) URL with a host", cacheURL)
	}
	return &AMP{brokerURL: b, cacheURL: c, fronts: fronts, client: &http.Client{
		Transport: rt,
		// The check below refuses redirects; the client must not follow
		// one either.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// Exchange implements [Method].
func (a *AMP) Exchange(ctx context.Context, pollRequest []byte) ([]byte, error) {
	// The HTTP/2 transport has no response-header timeout of its own;
	// bound the whole (small) exchange instead.
	ctx, cancel := context.WithTimeout(ctx, ResponseHeaderTimeout)
	defer cancel()
	pub := joinPath(a.brokerURL, "amp/client/"+amp.EncodePath(pollRequest))
	u, err := amp.CacheURL(pub, a.cacheURL, "c")
	if err != nil {
		return nil, fmt.Errorf("rendezvous: amp: cache URL: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: amp: %w", err)
	}
	front(req, a.fronts)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: amp: GET %s: %w", redactedTarget(req.URL), withoutURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{Code: resp.StatusCode, Status: resp.Status}
	}
	// A cache that redirects (to a login page, say) did not reach the
	// broker; the armor might even decode by accident.
	if resp.Header.Get("Location") != "" {
		return nil, fmt.Errorf("rendezvous: amp: unexpected redirect")
	}
	body, err := readLimited(resp.Body)
	if err != nil {
		return nil, err
	}
	return decodeAMPBody(body)
}

// redactedTarget names where an AMP request went, for errors: the scheme
// and host (the front, if any), not the path, which holds the whole poll
// request (the offer, client addresses included) in base64 that log
// scrubbing cannot see.
func redactedTarget(u *url.URL) string {
	return u.Scheme + "://" + u.Host + "/…"
}

// withoutURL drops the request URL that http.Client wraps its errors in,
// keeping the cause (and with it Timeout and errors.Is).
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// decodeAMPBody unwraps the armored poll response from an AMP page.
func decodeAMPBody(body []byte) ([]byte, error) {
	dec, err := amp.NewArmorDecoder(bytesReader(body))
	if err != nil {
		return nil, fmt.Errorf("rendezvous: amp: armor: %w", err)
	}
	payload, err := io.ReadAll(io.LimitReader(dec, MaxBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("rendezvous: amp: armor: %w", err)
	}
	if len(payload) > MaxBodySize {
		return nil, ErrBodyTooLarge
	}
	return payload, nil
}
