package client

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/common/rendezvous"
)

// DefaultMax is the number of proxies kept when max is not given.
const DefaultMax = 1

// MaxPeers bounds max. Each peer kept is a PeerConnection and a volunteer's
// proxy, and a session's queue of spares is allocated at max's size, so a
// bridge line's max=1000000000 would exhaust memory before any error.
const MaxPeers = 100

// Config is a client's configuration: the bridge line's arguments over the
// command line's. The zero value is not usable: set a rendezvous (BrokerURL
// or SQSQueueURL) at least. Build it with [Config.Set] / [Config.Apply] so
// that flags and SOCKS arguments share one parser.
type Config struct {
	// BrokerURL is the broker's base URL (or a CDN that forwards to it).
	BrokerURL string
	// AMPCacheURL, with BrokerURL, selects AMP-cache rendezvous.
	AMPCacheURL string
	// FrontDomains are the domain fronts, one picked at random per request.
	// Empty means no fronting.
	FrontDomains []string
	// ICEServers are the STUN URLs ("stun:host[:port]") to pick from.
	ICEServers []string
	// SQSQueueURL selects SQS rendezvous; SQSCredentials must be set too.
	SQSQueueURL string
	// SQSCredentials is the sqscreds argument (base64 JSON).
	SQSCredentials string
	// BridgeFingerprint names the bridge the broker should route to. Empty
	// means the default bridge.
	BridgeFingerprint string
	// Max is the number of proxies to keep at once; 0 means [DefaultMax].
	Max int
	// UTLSImitate names the browser TLS ClientHello used towards the broker.
	UTLSImitate string
	// UTLSNoSNI omits the TLS server name (uTLS only).
	UTLSNoSNI bool
	// CovertDTLSConfig shapes the DTLS handshake: "mimic" (the default,
	// Chromium's), "randomize", "randomizemimic" or "disable" (pion's).
	CovertDTLSConfig string
	// CovertDTLSFingerprint is a captured DTLS ClientHello in hex to
	// mimic instead of Chromium's.
	CovertDTLSFingerprint string
	// KeepLocalAddresses keeps private and loopback ICE candidates in the
	// offer (for tests on a LAN or loopback).
	KeepLocalAddresses bool

	// RootCAs overrides the roots that verify the broker's or the fronts'
	// certificates (nil: system roots plus ISRG Root X1). For tests and
	// private deployments.
	RootCAs *x509.CertPool
	// DialBroker, if set, opens the TCP connections to the broker or front.
	// For tests (mapping front names to loopback) and upstream proxies.
	DialBroker rendezvous.DialFunc

	// skippedICE records ice entries that were not usable STUN URLs, so
	// the transport can log them once.
	skippedICE []string
}

// Option describes one setting that can come from a flag or a SOCKS
// argument (the bridge line).
type Option struct {
	Name  string
	Usage string
	// Bool options take no value as flags ("-name" means true).
	Bool bool
	// Flag and SOCKS say where the option may appear.
	Flag, SOCKS bool

	set func(c *Config, v string) error
}

// options is the single table of settings. Apply walks it in order, so
// "front" is applied before "fronts": a present fronts wins.
var options = []Option{
	{Name: "url", Usage: "URL of the signaling broker (or of a CDN in front of it)", Flag: true, SOCKS: true,
		set: func(c *Config, v string) error { c.BrokerURL = v; return nil }},
	{Name: "ampcache", Usage: "URL of an AMP cache to use as a proxy for signaling", Flag: true, SOCKS: true,
		set: func(c *Config, v string) error { c.AMPCacheURL = v; return nil }},
	{Name: "front", Usage: "front domain (deprecated, use -fronts)", Flag: true, SOCKS: true,
		set: func(c *Config, v string) error { c.FrontDomains = rendezvous.SplitFronts(v); return nil }},
	{Name: "fronts", Usage: "comma-separated list of front domains, one chosen at random per request", Flag: true, SOCKS: true,
		set: func(c *Config, v string) error { c.FrontDomains = rendezvous.SplitFronts(v); return nil }},
	{Name: "ice", Usage: "comma-separated list of STUN servers (stun:host[:port])", Flag: true, SOCKS: true,
		set: setICE},
	{Name: "sqsqueue", Usage: "URL of an SQS queue to use for signaling", Flag: true, SOCKS: true,
		set: func(c *Config, v string) error { c.SQSQueueURL = v; return nil }},
	{Name: "sqscreds", Usage: "credentials for the SQS queue (base64 JSON)", Flag: true, SOCKS: true,
		set: func(c *Config, v string) error { c.SQSCredentials = v; return nil }},
	{Name: "fingerprint", Usage: "bridge fingerprint to ask the broker for (hex)", Flag: true, SOCKS: true,
		set: func(c *Config, v string) error { c.BridgeFingerprint = v; return nil }},
	{Name: "max", Usage: "capacity for number of multiplexed WebRTC peers", Flag: true, SOCKS: true,
		set: setMax},
	{Name: "utls-imitate", Usage: "TLS ClientHello to imitate towards the broker (e.g. hellorandomizedalpn)", Flag: true, SOCKS: true,
		set: func(c *Config, v string) error { c.UTLSImitate = v; return nil }},
	{Name: "utls-nosni", Usage: "remove the server name from the TLS ClientHello (with utls-imitate)", Bool: true, Flag: true, SOCKS: true,
		set: func(c *Config, v string) (err error) { c.UTLSNoSNI, err = parseBool(v); return err }},
	{Name: "covertdtls-config", Usage: "DTLS handshake shape: mimic (Chromium's, default), randomize, randomizemimic or disable (pion's own)", Flag: true, SOCKS: true,
		set: func(c *Config, v string) error { c.CovertDTLSConfig = v; return nil }},
	{Name: "covertdtls-fingerprint", Usage: "a captured DTLS ClientHello (hex) to mimic instead of Chromium's", Flag: true, SOCKS: true,
		set: func(c *Config, v string) error { c.CovertDTLSFingerprint = v; return nil }},
	{Name: "keep-local-addresses", Usage: "keep local LAN and loopback addresses in ICE candidates", Bool: true, Flag: true,
		set: func(c *Config, v string) (err error) { c.KeepLocalAddresses, err = parseBool(v); return err }},
}

// aliases maps deprecated flag spellings to option names.
var aliases = map[string]string{"keepLocalAddresses": "keep-local-addresses"}

// Options returns the settings table, for registering flags.
func Options() []Option { return append([]Option(nil), options...) }

// Aliases returns deprecated flag names and the option each stands for.
func Aliases() map[string]string {
	m := make(map[string]string, len(aliases))
	for k, v := range aliases {
		m[k] = v
	}
	return m
}

// Set parses one setting by name (a flag name, an alias, or a SOCKS
// argument key).
func (c *Config) Set(name, value string) error {
	if a, ok := aliases[name]; ok {
		name = a
	}
	for i := range options {
		if options[i].Name == name {
			if err := options[i].set(c, value); err != nil {
				return fmt.Errorf("client: %s: %w", name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("client: unknown option %q", name)
}

// Apply sets every option that lookup reports present, in table order.
// With socks true only options allowed in a bridge line are consulted (and
// flag-only keys in the bridge line are refused). Unknown keys are the
// caller's business.
func (c *Config) Apply(lookup func(name string) (string, bool), socks bool) error {
	for _, o := range options {
		v, ok := lookup(o.Name)
		if !ok {
			continue
		}
		if socks && !o.SOCKS {
			return fmt.Errorf("client: %s cannot be set in the bridge line", o.Name)
		}
		if err := o.set(c, v); err != nil {
			return fmt.Errorf("client: %s: %w", o.Name, err)
		}
	}
	return nil
}

func setMax(c *Config, v string) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("not an integer: %q", v)
	}
	if n < 1 || n > MaxPeers {
		return fmt.Errorf("must be at least 1 and at most %d, not %d", MaxPeers, n)
	}
	c.Max = n
	return nil
}

func setICE(c *Config, v string) error {
	c.ICEServers, c.skippedICE = nil, nil
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !usableSTUNURL(s) {
			c.skippedICE = append(c.skippedICE, s)
			continue
		}
		c.ICEServers = append(c.ICEServers, s)
	}
	return nil
}

// usableSTUNURL reports whether s can serve both NAT discovery and WebRTC.
// Only STUN is used: TURN would need credentials, and deployed clients skip
// other schemes too. Both parsers must accept it: pion refuses a whole
// PeerConnection for one ICE URL it cannot parse (an unbracketed IPv6
// address, a port followed by a path), so such an entry would fail every
// rendezvous that picked it instead of being skipped.
func usableSTUNURL(s string) bool {
	_, err := nat.ParseSTUNURL(s)
	return err == nil && nat.CheckICEURL(s) == nil
}

// parseBool accepts the spellings deployed bridge lines use ("true",
// "yes", case-insensitive) and strconv's, so "-utls-nosni" as a flag works.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "y", "on":
		return true, nil
	case "no", "n", "off", "":
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("not a boolean: %q", v)
	}
	return b, nil
}

// Rendezvous kinds chosen by [Config.RendezvousKind].
const (
	RendezvousHTTP = "http"
	RendezvousAMP  = "ampcache"
	RendezvousSQS  = "sqs"
)

// Errors of [Config.Validate].
var (
	// ErrNoRendezvous means neither url nor sqsqueue was given.
	ErrNoRendezvous = errors.New("client: no rendezvous method: need url (with optional ampcache) or sqsqueue")
	// ErrConflictingRendezvous means sqsqueue was combined with url or ampcache.
	ErrConflictingRendezvous = errors.New("client: sqsqueue cannot be combined with url or ampcache")
)

// RendezvousKind applies the selection rules: sqsqueue ⇒ SQS; ampcache and
// url ⇒ AMP; url ⇒ HTTP.
func (c *Config) RendezvousKind() (string, error) {
	switch {
	case c.SQSQueueURL != "":
		if c.BrokerURL != "" || c.AMPCacheURL != "" {
			return "", ErrConflictingRendezvous
		}
		if c.SQSCredentials == "" {
			return "", errors.New("client: sqsqueue needs sqscreds")
		}
		return RendezvousSQS, nil
	case c.AMPCacheURL != "" && c.BrokerURL != "":
		return RendezvousAMP, nil
	case c.AMPCacheURL != "":
		return "", errors.New("client: ampcache needs url (the broker behind the cache)")
	case c.BrokerURL != "":
		return RendezvousHTTP, nil
	}
	return "", ErrNoRendezvous
}

// Validate reports the first problem that would keep the configuration from
// working.
func (c *Config) Validate() error {
	if _, err := c.RendezvousKind(); err != nil {
		return err
	}
	if c.Max < 0 || c.Max > MaxPeers {
		return fmt.Errorf("client: max must be at least 1 and at most %d, not %d", MaxPeers, c.Max)
	}
	if c.BridgeFingerprint != "" {
		if _, err := messages.CanonicalFingerprint(c.BridgeFingerprint); err != nil {
			return fmt.Errorf("client: fingerprint: %w", err)
		}
	}
	if c.UTLSImitate != "" {
		if _, err := rendezvous.ParseClientHelloID(c.UTLSImitate); err != nil {
			return fmt.Errorf("client: %w", err)
		}
	} else if c.UTLSNoSNI {
		return errors.New("client: utls-nosni needs utls-imitate")
	}
	if c.SQSCredentials != "" {
		if _, err := rendezvous.ParseSQSCredentials(c.SQSCredentials); err != nil {
			return fmt.Errorf("client: %w", err)
		}
	}
	if _, _, err := c.dtlsShape(); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}

// withDefaults returns a copy of c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.Max == 0 {
		c.Max = DefaultMax
	}
	if c.BridgeFingerprint == "" {
		c.BridgeFingerprint = messages.DefaultBridgeFingerprint
	} else if fp, err := messages.CanonicalFingerprint(c.BridgeFingerprint); err == nil {
		c.BridgeFingerprint = fp
	}
	c.FrontDomains = append([]string(nil), c.FrontDomains...)
	c.ICEServers = append([]string(nil), c.ICEServers...)
	return c
}
