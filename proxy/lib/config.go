package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/pion/webrtc/v5"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/common/relaypattern"
)

// Defaults of the standalone proxy (wire-protocol §4.1).
const (
	DefaultBrokerURL      = "https://snowflake-broker.torproject.net/"
	DefaultRelayURL       = "wss://snowflake.torproject.net/"
	DefaultSTUNURL        = "stun:stun.l.google.com:19302,stun:stun.voip.blackberry.com:3478"
	DefaultNATProbeURL    = "https://snowflake-broker.torproject.net:8443/probe"
	DefaultRelayPattern   = "snowflake.torproject.net$"
	DefaultPollInterval   = 5 * time.Second
	MinPollInterval       = 2 * time.Second
	DefaultConcurrentPoll = 20
)

// Timing of one client (wire-protocol §4.3).
const (
	// answerDeadline is ¾ of the 5 s broker client timeout: the answer is
	// sent with whatever candidates were gathered by then.
	answerDeadline = 3750 * time.Millisecond
	// openTimeout bounds the wait for the client's data channel after the
	// answer was sent.
	openTimeout = 20 * time.Second
	// DefaultIdleTimeout closes a connection when nothing moved for this
	// long: nothing came from the relay and the client drained nothing.
	DefaultIdleTimeout = 30 * time.Second
	// brokerTimeout bounds one broker request; the broker holds polls
	// for 10 s.
	brokerTimeout = 30 * time.Second
	// maxBackoff caps the delay between polls after broker errors.
	maxBackoff = 5 * time.Minute
	// maxNextPoll caps the broker's advised poll delay.
	maxNextPoll = time.Hour
)

// Config configures a Proxy. The zero value of each field means its
// default; Validate reports bad values.
type Config struct {
	// BrokerURL is the broker's base URL; "proxy" and "answer" are
	// resolved against it.
	BrokerURL string
	// RelayURL is the relay used when the broker names none.
	RelayURL string
	// STUNURLs are the STUN servers for ICE gathering.
	STUNURLs []string
	// NATProbeURL is the probe service (wire-protocol §4.5). Empty skips
	// the probe and the NAT type stays unknown.
	NATProbeURL string
	// NATRetestInterval re-runs the NAT probe periodically; zero never
	// re-runs it.
	NATRetestInterval time.Duration
	// Type is the proxy type reported to the broker (default
	// "standalone").
	Type string
	// Capacity limits concurrent clients; zero means unlimited.
	Capacity int
	// PollInterval is the delay between polls that found no client
	// (default 5 s, at least 2 s).
	PollInterval time.Duration
	// ConcurrentPolls is how many polls are kept outstanding at the
	// broker while capacity is free (default 20). Upstream proxies keep one,
	// so clients that arrive together are matched one per poll cycle;
	// several let a burst of clients be matched at once. The broker holds
	// each poll 10 s and a poll is only re-sent a poll interval after it
	// returned, so 20 cost about 1.3 requests per second per idle proxy.
	ConcurrentPolls int
	// Relay says which relay URLs from the broker are acceptable.
	// Pattern defaults to DefaultRelayPattern.
	Relay RelayPolicy
	// SkipRelayCheck polls without first checking that the default relay
	// is reachable (browser proxies, where the relay check is the page's
	// business, and tests).
	SkipRelayCheck bool
	// KeepLocalAddresses keeps private and loopback ICE candidates.
	KeepLocalAddresses bool
	// OutboundAddress, if set, is announced as the host candidate address
	// (NAT 1:1) and used to pick the interface. Native only.
	OutboundAddress string
	// CovertDTLSConfig shapes the DTLS handshake (upstream's
	// covertdtls-config): "mimic" (default, Chromium's), "randomize",
	// "randomizemimic" or "disable" (pion's own). Native only: in a
	// browser the handshake is the browser's.
	CovertDTLSConfig string
	// EphemeralPortMin and EphemeralPortMax limit the UDP ports used for
	// ICE; both zero means any port. Native only.
	EphemeralPortMin, EphemeralPortMax uint16
	// IdleTimeout closes a client connection when nothing arrived from the
	// relay and the client's data channel drained nothing for this long
	// (default 30 s).
	IdleTimeout time.Duration
	// HTTPClient is used for the broker and the NAT probe; nil means a
	// client with the package's timeouts.
	HTTPClient *http.Client
	// ConfigureWebRTC, if set, is called on the SettingEngine after the
	// package's own settings (tests use it for pion's virtual network).
	ConfigureWebRTC func(*webrtc.SettingEngine)
	// GeoIP, if set, maps client addresses to countries for
	// Stats.TakeCountries.
	GeoIP interface {
		Lookup(netip.Addr) (string, bool)
	}
	// Logger receives the proxy's logs; nil discards them.
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	d := c.withDefaults()
	if _, err := parseBase(d.BrokerURL); err != nil {
		return fmt.Errorf("proxy: broker URL: %w", err)
	}
	// The same check as each client's relay gets: a default relay that
	// fails it would pass the reachability check (a WebSocket dial also
	// takes http and https) and then fail every client sent to it.
	if _, err := parseRelay(d.RelayURL); err != nil {
		return fmt.Errorf("proxy: relay URL: %w", err)
	}
	if d.NATProbeURL != "" {
		if _, err := parseBase(d.NATProbeURL); err != nil {
			return fmt.Errorf("proxy: NAT probe URL: %w", err)
		}
	}
	if err := relaypattern.Validate(d.Relay.Pattern); err != nil {
		return fmt.Errorf("proxy: relay pattern: %w", err)
	}
	if c.Capacity < 0 {
		return errors.New("proxy: capacity must not be negative")
	}
	if c.ConcurrentPolls < 0 {
		return errors.New("proxy: concurrent polls must not be negative")
	}
	if c.PollInterval != 0 && c.PollInterval < MinPollInterval {
		return fmt.Errorf("proxy: poll interval %v is below the minimum %v", c.PollInterval, MinPollInterval)
	}
	if c.NATRetestInterval < 0 || c.IdleTimeout < 0 {
		return errors.New("proxy: intervals must not be negative")
	}
	if (c.EphemeralPortMin == 0) != (c.EphemeralPortMax == 0) || c.EphemeralPortMin > c.EphemeralPortMax {
		return fmt.Errorf("proxy: bad ephemeral port range %d:%d", c.EphemeralPortMin, c.EphemeralPortMax)
	}
	for _, s := range d.STUNURLs {
		if err := nat.CheckICEURL(s); err != nil {
			return fmt.Errorf("proxy: STUN URL: %w", err)
		}
	}
	if err := c.validateDTLSShape(); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	return nil
}

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.BrokerURL == "" {
		c.BrokerURL = DefaultBrokerURL
	}
	if c.RelayURL == "" {
		c.RelayURL = DefaultRelayURL
	}
	if c.Type == "" {
		c.Type = messages.ProxyTypeStandalone
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.ConcurrentPolls == 0 {
		c.ConcurrentPolls = DefaultConcurrentPoll
	}
	if c.Relay.Pattern == "" {
		c.Relay.Pattern = DefaultRelayPattern
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: brokerTimeout}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// parseBase parses an http(s) URL.
func parseBase(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q: no host", s)
	}
	return u, nil
}
