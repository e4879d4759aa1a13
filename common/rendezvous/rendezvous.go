// Package rendezvous carries a client's poll request to the Snowflake broker
// and its response back, over one of the three control-path transports of
// the wire protocol: a direct or domain-fronted HTTPS POST (optionally with a
// browser-like uTLS ClientHello), a GET through an AMP cache, or Amazon SQS.
//
// The package moves opaque request and response bodies (the "1.0\n{...}"
// poll request and its JSON response); encoding them is common/messages' job.
package rendezvous

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
)

// MaxBodySize caps every broker response read (wire protocol §2.1).
const MaxBodySize = 100000

// Method exchanges one client poll request for the broker's response body.
// Implementations are safe for concurrent use.
type Method interface {
	// Exchange sends the encoded poll request and returns the raw poll
	// response body. It honours ctx for cancellation.
	Exchange(ctx context.Context, pollRequest []byte) ([]byte, error)
}

// Errors shared by the methods.
var (
	// ErrBodyTooLarge means a response exceeded [MaxBodySize].
	ErrBodyTooLarge = errors.New("rendezvous: response body too large")
)

// StatusError is a broker (or CDN) reply with an HTTP status other than 200.
type StatusError struct {
	Code   int
	Status string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("rendezvous: broker returned HTTP status %q", e.Status)
}

// readLimited reads the whole of r, failing if it exceeds MaxBodySize.
func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("rendezvous: read response: %w", err)
	}
	if len(b) > MaxBodySize {
		return nil, ErrBodyTooLarge
	}
	return b, nil
}

// front rewrites req for domain fronting: the connection (DNS, TCP, TLS SNI)
// goes to a front chosen uniformly at random, while the Host header (HTTP/2
// :authority) keeps naming the real destination, which the CDN routes by.
// With no fronts req is unchanged.
func front(req *http.Request, fronts []string) {
	if len(fronts) == 0 {
		return
	}
	f := fronts[rand.IntN(len(fronts))]
	req.Host = req.URL.Host
	req.URL.Host = f
}

// SplitFronts parses a comma-separated front list, dropping empty entries.
func SplitFronts(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// joinPath resolves a relative path against a base URL the way upstream
// peers do: "client" against "https://b/x/" gives "https://b/x/client".
func joinPath(base *url.URL, rel string) *url.URL {
	return base.ResolveReference(&url.URL{Path: rel})
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
