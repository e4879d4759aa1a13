// Package settings parses the browser proxy's settings: the JSON object
// that the web page reads from its settings.json and that the extension
// keeps in chrome.storage. It turns them into a proxy.Config.
//
// The JSON comes from a file the operator ships or from extension storage,
// not from the network, but it is still checked field by field so that a
// typo gives a clear error instead of a proxy that silently misbehaves.
package settings

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/snowflake-go/snowflake/common/messages"
	proxy "github.com/snowflake-go/snowflake/proxy/lib"
)

// MaxSize bounds the settings JSON.
const MaxSize = 16 << 10

// DefaultConcurrentPolls is the browser's number of outstanding polls.
// Browsers allow six HTTP/1.1 connections per host, and a poll holds one
// for up to 10 s: with more polls than that, the answer to a matched
// client waits behind them and arrives after the client gave up. (Over
// HTTP/2, as with the real broker, requests share one connection; two
// polls still leave room to spare.)
const DefaultConcurrentPolls = 2

// MaxConcurrentPolls keeps polls below the per-host connection limit.
const MaxConcurrentPolls = 4

// Settings are the user-visible knobs of the browser proxy. The zero value
// of each field means the standalone proxy's default.
type Settings struct {
	// Broker is the broker's base URL.
	Broker string `json:"broker,omitempty"`
	// Relay is the relay used when the broker names none.
	Relay string `json:"relay,omitempty"`
	// STUN lists the STUN servers ("stun:host:port").
	STUN []string `json:"stun,omitempty"`
	// NATProbe is the NAT probe service URL; "off" skips the probe.
	NATProbe string `json:"natProbe,omitempty"`
	// RelayPattern is the accepted relay host-name pattern (must end in $).
	RelayPattern string `json:"relayPattern,omitempty"`
	// AllowNonTLSRelay accepts ws:// relays.
	AllowNonTLSRelay bool `json:"allowNonTLSRelay,omitempty"`
	// AllowPrivateRelay accepts relays at private or loopback IP literals.
	AllowPrivateRelay bool `json:"allowPrivateRelay,omitempty"`
	// Capacity limits concurrent clients; 0 means unlimited.
	Capacity int `json:"capacity,omitempty"`
	// PollIntervalSeconds is the delay between polls (default 5, min 2).
	PollIntervalSeconds float64 `json:"pollIntervalSeconds,omitempty"`
	// ConcurrentPolls is how many polls are kept outstanding (default
	// DefaultConcurrentPolls, at most MaxConcurrentPolls).
	ConcurrentPolls int `json:"concurrentPolls,omitempty"`
	// ReportURL, if set, receives the status JSON by POST every second.
	// It is read by the page's and the extension's script, not by Go; it
	// is parsed here so that one schema describes the file.
	ReportURL string `json:"reportURL,omitempty"`
}

// ErrType means the proxy type is not one the browser build reports.
var ErrType = errors.New("settings: proxy type must be webext or badge")

// Parse decodes settings JSON. Unknown keys are errors.
func Parse(b []byte) (*Settings, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("settings: larger than %d bytes", MaxSize)
	}
	var s Settings
	if len(bytes.TrimSpace(b)) == 0 {
		return &s, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("settings: trailing data after the JSON object")
	}
	if len(s.STUN) == 0 {
		// "stun": [] means the default list, like an absent key.
		s.STUN = nil
	}
	if s.Capacity < 0 {
		return nil, errors.New("settings: capacity must not be negative")
	}
	if s.ConcurrentPolls < 0 || s.ConcurrentPolls > MaxConcurrentPolls {
		return nil, fmt.Errorf("settings: concurrentPolls must be within 0..%d", MaxConcurrentPolls)
	}
	if s.PollIntervalSeconds < 0 || s.PollIntervalSeconds > 3600 {
		return nil, errors.New("settings: pollIntervalSeconds must be within 0..3600")
	}
	return &s, nil
}

// Config turns the settings into a proxy configuration for a proxy of the
// given type (messages.ProxyTypeWebext or messages.ProxyTypeBadge), and
// validates it.
func (s *Settings) Config(proxyType string, logger *slog.Logger) (proxy.Config, error) {
	if proxyType != messages.ProxyTypeWebext && proxyType != messages.ProxyTypeBadge {
		return proxy.Config{}, ErrType
	}
	c := proxy.Config{
		BrokerURL:       s.Broker,
		RelayURL:        s.Relay,
		STUNURLs:        s.STUN,
		NATProbeURL:     s.NATProbe,
		Type:            proxyType,
		Capacity:        s.Capacity,
		ConcurrentPolls: s.ConcurrentPolls,
		PollInterval:    time.Duration(s.PollIntervalSeconds * float64(time.Second)),
		Relay: proxy.RelayPolicy{
			Pattern:      s.RelayPattern,
			AllowNonTLS:  s.AllowNonTLSRelay,
			AllowPrivate: s.AllowPrivateRelay,
		},
		Logger: logger,
	}
	switch s.NATProbe {
	case "":
		c.NATProbeURL = proxy.DefaultNATProbeURL
	case "off":
		c.NATProbeURL = ""
	}
	if c.ConcurrentPolls == 0 {
		c.ConcurrentPolls = DefaultConcurrentPolls
	}
	if len(c.STUNURLs) == 0 {
		c.STUNURLs = splitList(proxy.DefaultSTUNURL)
	}
	if err := c.Validate(); err != nil {
		return proxy.Config{}, fmt.Errorf("settings: %w", err)
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range bytes.Split([]byte(s), []byte(",")) {
		if f := bytes.TrimSpace(f); len(f) > 0 {
			out = append(out, string(f))
		}
	}
	return out
}
