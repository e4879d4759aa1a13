package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
)

// brokerClient speaks the proxy side of the broker API (wire-protocol
// §2.6, §2.7).
type brokerClient struct {
	send            poster
	pollURL, ansURL string
	proxyType       string
	pattern         string
}

// poster sends one POST request and returns the body of a 200 response. The
// native build uses net/http; the browser build calls fetch directly, which
// keeps net/http's client out of the WebAssembly binary.
type poster func(ctx context.Context, url string, body []byte) ([]byte, error)

func newBrokerClient(base string, send poster, proxyType, pattern string) (*brokerClient, error) {
	u, err := parseBase(base)
	if err != nil {
		return nil, fmt.Errorf("broker URL: %w", err)
	}
	return &brokerClient{
		send:      send,
		pollURL:   u.ResolveReference(&url.URL{Path: "proxy"}).String(),
		ansURL:    u.ResolveReference(&url.URL{Path: "answer"}).String(),
		proxyType: proxyType,
		pattern:   pattern,
	}, nil
}

// newSid returns a fresh poll session id: 16 random bytes, standard base64
// without padding, like upstream proxies.
func newSid() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawStdEncoding.EncodeToString(b[:])
}

// poll sends one proxy poll and returns the broker's response.
func (b *brokerClient) poll(ctx context.Context, sid string, natType nat.Type, clients int) (*messages.ProxyPollResponse, error) {
	req := messages.ProxyPollRequest{
		Sid:                  sid,
		Version:              messages.ProxyVersion,
		Type:                 b.proxyType,
		NAT:                  natType,
		Clients:              clients / 8 * 8,
		AcceptedRelayPattern: b.pattern,
	}
	body, err := req.Encode()
	if err != nil {
		return nil, fmt.Errorf("broker: poll: %w", err)
	}
	resp, err := b.post(ctx, b.pollURL, body)
	if err != nil {
		return nil, fmt.Errorf("broker: poll: %w", err)
	}
	r, err := messages.DecodeProxyPollResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("broker: poll: %w", err)
	}
	return r, nil
}

// answer posts an answer envelope. It reports false if the client is gone.
func (b *brokerClient) answer(ctx context.Context, sid, answer string) (bool, error) {
	req := messages.AnswerRequest{Version: messages.ProxyVersion, Sid: sid, Answer: answer}
	body, err := req.Encode()
	if err != nil {
		return false, fmt.Errorf("broker: answer: %w", err)
	}
	resp, err := b.post(ctx, b.ansURL, body)
	if err != nil {
		return false, fmt.Errorf("broker: answer: %w", err)
	}
	r, err := messages.DecodeAnswerResponse(resp)
	if err != nil {
		return false, fmt.Errorf("broker: answer: %w", err)
	}
	switch r.Status {
	case messages.StatusSuccess:
		return true, nil
	case messages.StatusClientGone:
		return false, nil
	default:
		return false, fmt.Errorf("broker: answer: unexpected status %q", r.Status)
	}
}

// post sends body and returns at most MaxBodySize bytes of a 200 response.
func post(ctx context.Context, hc *http.Client, u string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, messages.MaxBodySize))
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, messages.MaxBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if len(b) > messages.MaxBodySize {
		return nil, fmt.Errorf("response larger than %d bytes", messages.MaxBodySize)
	}
	return b, nil
}

func (b *brokerClient) post(ctx context.Context, u string, body []byte) ([]byte, error) {
	return b.send(ctx, u, body)
}
