package h2client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
)

// Transport is an http.RoundTripper for https URLs over [Conn]s, one
// connection per address reused across requests as a browser reuses its
// HTTP/2 session, with another opened only when that one is full or
// going away.
type Transport struct {
	// DialTLSContext opens a connection to addr ("host:port") whose TLS
	// handshake has negotiated h2. Required.
	DialTLSContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Config applies to every connection.
	Config Config

	mu    sync.Mutex // guards conns
	conns map[string][]*Conn
}

// maxAttempts bounds how often a request the server did not process
// (GOAWAY, refused stream, a connection that died idle) is sent again.
const maxAttempts = 3

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != "https" {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("h2client: only https URLs are supported")
	}
	addr := req.URL.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "443")
	}
	for attempt := 1; ; attempt++ {
		c, err := t.conn(req.Context(), addr)
		if err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
		resp, err := c.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		if !IsRetryable(err) || attempt == maxAttempts || req.Context().Err() != nil {
			return nil, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, fmt.Errorf("%w (and the request body cannot be sent again)", err)
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, fmt.Errorf("%w (and getting the body again failed: %w)", err, gerr)
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// conn returns a connection to addr that can take a request, dialling one
// if none can.
func (t *Transport) conn(ctx context.Context, addr string) (*Conn, error) {
	t.mu.Lock()
	if t.conns == nil {
		t.conns = map[string][]*Conn{}
	}
	live := t.conns[addr][:0]
	var found *Conn
	for _, c := range t.conns[addr] {
		select {
		case <-c.Done():
			continue
		default:
		}
		live = append(live, c)
		if found == nil && c.CanTakeRequest() {
			found = c
		}
	}
	t.conns[addr] = live
	t.mu.Unlock()
	if found != nil {
		return found, nil
	}
	if t.DialTLSContext == nil {
		return nil, errors.New("h2client: Transport has no DialTLSContext")
	}
	nc, err := t.DialTLSContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c, err := NewConn(nc, t.Config)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	if t.conns == nil {
		// Close ran while dialling.
		t.conns = map[string][]*Conn{}
	}
	t.conns[addr] = append(t.conns[addr], c)
	t.mu.Unlock()
	return c, nil
}

// CloseIdleConnections closes the connections without open requests.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	var idle []*Conn
	for addr, cs := range t.conns {
		keep := cs[:0]
		for _, c := range cs {
			if c.Idle() {
				idle = append(idle, c)
			} else {
				keep = append(keep, c)
			}
		}
		t.conns[addr] = keep
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// Close closes every connection; open requests fail. The Transport can
// be used again afterwards.
func (t *Transport) Close() error {
	t.mu.Lock()
	all := t.conns
	t.conns = nil
	t.mu.Unlock()
	for _, cs := range all {
		for _, c := range cs {
			c.Close()
		}
	}
	return nil
}
