package rendezvous

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// HTTP is the plain rendezvous method: POST <broker>/client, optionally
// domain-fronted.
type HTTP struct {
	brokerURL *url.URL
	fronts    []string
	client    *http.Client
}

// NewHTTP returns the HTTP method for brokerURL (the base URL, normally
// ending in "/"). rt carries the requests; build it with [NewRoundTripper].
func NewHTTP(brokerURL string, fronts []string, rt http.RoundTripper) (*HTTP, error) {
	u, err := parseBaseURL(brokerURL)
	if err != nil {
		return nil, err
	}
	return &HTTP{brokerURL: u, fronts: fronts, client: &http.Client{
		Transport: rt,
		// A broker never redirects; following one could leak the request
		// to an unfronted host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: broker URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("rendezvous: broker URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("rendezvous: broker URL %q has no host", s)
	}
	return u, nil
}

// Exchange implements [Method].
func (h *HTTP) Exchange(ctx context.Context, pollRequest []byte) ([]byte, error) {
	// The HTTP/2 transport has no response-header timeout of its own;
	// bound the whole (small) exchange instead.
	ctx, cancel := context.WithTimeout(ctx, ResponseHeaderTimeout)
	defer cancel()
	u := joinPath(h.brokerURL, "client")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(pollRequest))
	if err != nil {
		return nil, fmt.Errorf("rendezvous: http: %w", err)
	}
	front(req, h.fronts)
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: http: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{Code: resp.StatusCode, Status: resp.Status}
	}
	return readLimited(resp.Body)
}
