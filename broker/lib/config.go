package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/snowflake-go/snowflake/common/geoip"
)

// Defaults for Config fields left zero.
const (
	// DefaultClientTimeout is how long a matched client waits for the
	// proxy's answer: 5 s fits the request limits of the CDNs in front of
	// the broker.
	DefaultClientTimeout = 5 * time.Second
	// DefaultClientWait is how long a client poll that finds no fitting
	// proxy waits for one to poll before it is answered "no proxies".
	// With the answer's wait (DefaultClientTimeout) a request stays
	// within 7 s, below the CDNs' limit of about 10 s.
	DefaultClientWait = 2 * time.Second
	// DefaultProxyPollTimeout is how long a proxy poll is held.
	DefaultProxyPollTimeout = 10 * time.Second
	// DefaultNextPoll is the poll interval advised to proxies in a pool.
	DefaultNextPoll = 20 * time.Second
	// RejectedNextPoll is advised to proxies refused for their relay
	// pattern: they will not be useful until reconfigured.
	RejectedNextPoll = time.Hour
	// DefaultMaxWaitingProxies bounds memory: beyond it proxy polls are
	// answered "no match" at once.
	DefaultMaxWaitingProxies = 200000
	// DefaultMetricsInterval is the metrics-log period.
	DefaultMetricsInterval = 24 * time.Hour
	// DefaultIPCountInterval is the period of the distinct-address
	// reports (Config.IPCountPrefix).
	DefaultIPCountInterval = time.Hour
	// DefaultTrustedHops is one front (CDN or reverse proxy) whose
	// forwarding headers are believed: the rule of wire-protocol §2.
	DefaultTrustedHops = 1
	// NoTrustedHops, as Config.TrustedHops, ignores Forwarded and
	// X-Forwarded-For: statistics use the TCP peer's address.
	NoTrustedHops = -1
	// SQS timing (wire-protocol §2.11).
	DefaultSQSCleanupInterval = 30 * time.Second
	DefaultSQSQueueMaxAge     = 2 * time.Minute
)

// Config configures a Broker. The zero value of every field means its
// default; Bridges nil means [DefaultBridgeList].
type Config struct {
	// Logger receives operational logs; nil discards them. Install the
	// address-scrubbing handler in it unless unsafe logging is wanted.
	Logger *slog.Logger

	// Bridges is the bridge list (see [ParseBridgeList]).
	Bridges BridgeList
	// AllowedRelayPattern is the broker's relay host-name pattern. A proxy
	// is given offers only if its AcceptedRelayPattern allows every host
	// this pattern allows. The empty pattern refuses every proxy that
	// sends a pattern (upstream semantics).
	AllowedRelayPattern string
	// LegacyRelayPattern, if not empty, is presumed for proxies that send
	// no AcceptedRelayPattern (before 2.3); if empty they are refused.
	LegacyRelayPattern string

	// ClientTimeout bounds the wait for a matched proxy's answer.
	ClientTimeout time.Duration
	// ClientWait bounds the wait of a client poll for a proxy to poll
	// when none is waiting; negative answers "no proxies" at once, as
	// upstream brokers do.
	ClientWait time.Duration
	// ProxyPollTimeout is how long a proxy poll is held.
	ProxyPollTimeout time.Duration
	// NextPollUnrestricted and NextPollRestricted are the poll intervals
	// advised to proxies of each pool (NextPoll, in milliseconds on the
	// wire).
	NextPollUnrestricted, NextPollRestricted time.Duration
	// MaxWaitingProxies caps the proxies held at once (negative: no cap).
	MaxWaitingProxies int

	// GeoIP resolves addresses to countries for statistics; nil counts
	// every address as "??". Replace it at run time with SetGeoIP.
	GeoIP *geoip.Table
	// MetricsLogPath is the file the metrics log is appended to and that
	// /metrics serves; empty disables both.
	MetricsLogPath string
	// MetricsInterval is the metrics-log period.
	MetricsInterval time.Duration

	// IPCountPrefix, if not empty, makes Run write the number of distinct
	// client and proxy addresses of every IPCountInterval to a new file
	// named IPCountPrefix + the interval's start time (see package
	// ipcount). Addresses are never stored, only a sketch of keyed hashes
	// whose key is discarded at the end of each interval.
	IPCountPrefix string
	// IPCountInterval is the period of those reports; intervals end on
	// multiples of it (e.g. at the top of the hour).
	IPCountInterval time.Duration

	// TrustedHops is the number of reverse proxies in front of the broker
	// whose forwarding headers are believed (0 means DefaultTrustedHops,
	// NoTrustedHops none). The statistics address is the leftmost public
	// address of Forwarded, else of X-Forwarded-For, else the TCP peer;
	// with n trusted hops the n-1 rightmost entries of each header, which
	// the broker's own inner fronts appended, are never taken for a
	// client's.
	TrustedHops int

	// SQS configures the SQS rendezvous; nil disables it.
	SQS *SQSConfig

	// Listener, if set, is where Run serves HTTP(S); otherwise Run listens
	// on Addr. Run closes it.
	Listener net.Listener
	// Addr is the listen address when Listener is nil; empty means Run
	// serves no HTTP (the caller serves Handler itself).
	Addr string
	// TLSConfig, if set, makes Run serve HTTPS with it.
	TLSConfig *tls.Config
	// HTTP01Addr and HTTP01Handler, if both set, make Run also serve the
	// ACME HTTP-01 challenge responder (see ACME).
	HTTP01Addr    string
	HTTP01Handler http.Handler
	// MaxConnections caps concurrently open HTTP connections (0: 50000).
	MaxConnections int
}

// DefaultMaxConnections leaves room for the default waiting-proxy count of
// a large deployment while bounding file descriptors and memory.
const DefaultMaxConnections = 50000

// Validate reports configuration errors.
func (c *Config) Validate() error {
	var errs []error
	if c.ClientTimeout < 0 || c.ProxyPollTimeout < 0 || c.MetricsInterval < 0 || c.IPCountInterval < 0 ||
		c.NextPollRestricted < 0 || c.NextPollUnrestricted < 0 {
		errs = append(errs, errors.New("negative duration"))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("MaxConnections %d is negative", c.MaxConnections))
	}
	if c.TrustedHops < NoTrustedHops {
		errs = append(errs, fmt.Errorf("TrustedHops %d out of range", c.TrustedHops))
	}
	if c.Bridges != nil && len(c.Bridges) == 0 {
		errs = append(errs, ErrEmptyBridgeList)
	}
	if c.SQS != nil {
		if err := c.SQS.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if (c.HTTP01Addr == "") != (c.HTTP01Handler == nil) {
		errs = append(errs, errors.New("HTTP01Addr and HTTP01Handler go together"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("broker: config: %w", err)
	}
	return nil
}

// withDefaults returns a copy with defaults filled in.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Bridges == nil {
		c.Bridges = DefaultBridgeList()
	}
	if c.ClientTimeout == 0 {
		c.ClientTimeout = DefaultClientTimeout
	}
	if c.ClientWait == 0 {
		c.ClientWait = DefaultClientWait
	}
	if c.ProxyPollTimeout == 0 {
		c.ProxyPollTimeout = DefaultProxyPollTimeout
	}
	if c.NextPollRestricted == 0 {
		c.NextPollRestricted = DefaultNextPoll
	}
	if c.NextPollUnrestricted == 0 {
		c.NextPollUnrestricted = DefaultNextPoll
	}
	if c.MaxWaitingProxies == 0 {
		c.MaxWaitingProxies = DefaultMaxWaitingProxies
	}
	if c.MetricsInterval == 0 {
		c.MetricsInterval = DefaultMetricsInterval
	}
	if c.IPCountInterval == 0 {
		c.IPCountInterval = DefaultIPCountInterval
	}
	if c.TrustedHops == 0 {
		c.TrustedHops = DefaultTrustedHops
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.SQS != nil {
		s := *c.SQS
		if s.CleanupInterval == 0 {
			s.CleanupInterval = DefaultSQSCleanupInterval
		}
		if s.QueueMaxAge == 0 {
			s.QueueMaxAge = DefaultSQSQueueMaxAge
		}
		if s.ReceiveWait == 0 {
			s.ReceiveWait = DefaultSQSReceiveWait
		}
		c.SQS = &s
	}
	return c
}
