// Command snowflake-broker is the Snowflake rendezvous broker: it matches
// censored clients with volunteer proxies. Flags follow upstream
// snowflake-broker; see -help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	broker "github.com/snowflake-go/snowflake/broker/lib"
	"github.com/snowflake-go/snowflake/common/geoip"
	"github.com/snowflake-go/snowflake/common/scrub"
)

func main() {
	var (
		acmeEmail         = flag.String("acme-email", "", "optional contact email for Let's Encrypt notifications")
		acmeHostnames     = flag.String("acme-hostnames", "", "comma-separated hostnames for the TLS certificate (ACME)")
		acmeCertCache     = flag.String("acme-cert-cache", "acme-cert-cache", "directory in which ACME certificates are cached")
		certFile          = flag.String("cert", "", "TLS certificate file (with -key)")
		keyFile           = flag.String("key", "", "TLS private key file (with -cert)")
		disableTLS        = flag.Bool("disable-tls", false, "serve plain HTTP (behind a TLS-terminating front)")
		addr              = flag.String("addr", ":443", "address to listen on")
		bridgeListPath    = flag.String("bridge-list-path", "", "file with one JSON bridge per line (default: the built-in default bridge)")
		allowedPattern    = flag.String("allowed-relay-pattern", "", "relay host-name pattern; proxies whose AcceptedRelayPattern is narrower are refused (e.g. snowflake.torproject.net$)")
		legacyPattern     = flag.String("default-relay-pattern", "", "pattern presumed for proxies that send none (before v2.3); empty refuses them")
		geoipDB           = flag.String("geoipdb", "/usr/share/tor/geoip", "Tor geoip database for IPv4 (reloaded on SIGHUP)")
		geoip6DB          = flag.String("geoip6db", "/usr/share/tor/geoip6", "Tor geoip database for IPv6 (reloaded on SIGHUP)")
		disableGeoIP      = flag.Bool("disable-geoip", false, "do not load geoip databases (every country is ??)")
		metricsLog        = flag.String("metrics-log", "", "file the daily metrics are appended to and /metrics serves (empty: none)")
		metricsInterval   = flag.Duration("metrics-interval", broker.DefaultMetricsInterval, "metrics log period")
		ipCountPrefix     = flag.String("ip-count-prefix", "", "path prefix of files counting the distinct client and proxy IP addresses of each -ip-count-interval (empty: off)")
		ipCountInterval   = flag.Duration("ip-count-interval", broker.DefaultIPCountInterval, "period of the -ip-count-prefix files")
		trustedHops       = flag.Int("trusted-hops", broker.DefaultTrustedHops, "number of reverse proxies in front of the broker whose Forwarded/X-Forwarded-For headers are believed (0: use the TCP peer)")
		pollIntervalFile  = flag.String("poll-interval-filepath", "", `JSON file {"unrestricted_poll_interval":MS,"restricted_poll_interval":MS} (reloaded on SIGHUP)`)
		sqsName           = flag.String("broker-sqs-name", "", "name of the SQS queue to receive client polls on")
		sqsRegion         = flag.String("broker-sqs-region", "", "AWS region of the SQS queue")
		sqsProfiles       = flag.String("sqs-profiles", "", "comma-separated AWS profiles to listen with (default: the default credential chain)")
		clientTimeout     = flag.Duration("client-timeout", broker.DefaultClientTimeout, "how long a matched client waits for the proxy's answer")
		clientWait        = flag.Duration("client-wait", broker.DefaultClientWait, "how long a client that finds no proxy waits for one to poll (0: answer \"no proxies\" at once, as upstream brokers do)")
		maxWaitingProxies = flag.Int("max-waiting-proxies", broker.DefaultMaxWaitingProxies, "most proxy polls held at once; more get \"no match\" at once")
		maxConnections    = flag.Int("max-connections", broker.DefaultMaxConnections, "most concurrently open HTTP connections")
		logPath           = flag.String("log", "", "log file (default: standard error)")
		unsafeLogging     = flag.Bool("unsafe-logging", false, "do not scrub IP addresses from logs")
	)
	flag.Parse()
	if err := run(options{
		acmeEmail: *acmeEmail, acmeHostnames: *acmeHostnames, acmeCertCache: *acmeCertCache,
		certFile: *certFile, keyFile: *keyFile, disableTLS: *disableTLS, addr: *addr,
		bridgeListPath: *bridgeListPath, allowedPattern: *allowedPattern, legacyPattern: *legacyPattern,
		geoipDB: *geoipDB, geoip6DB: *geoip6DB, disableGeoIP: *disableGeoIP,
		metricsLog: *metricsLog, metricsInterval: *metricsInterval, pollIntervalFile: *pollIntervalFile,
		ipCountPrefix: *ipCountPrefix, ipCountInterval: *ipCountInterval, trustedHops: *trustedHops,
		sqsName: *sqsName, sqsRegion: *sqsRegion, sqsProfiles: *sqsProfiles,
		clientTimeout: *clientTimeout, clientWait: *clientWait, maxWaitingProxies: *maxWaitingProxies, maxConnections: *maxConnections,
		logPath: *logPath, unsafeLogging: *unsafeLogging,
	}); err != nil {
		fmt.Fprintln(os.Stderr, "snowflake-broker:", err)
		os.Exit(1)
	}
}

type options struct {
	acmeEmail, acmeHostnames, acmeCertCache, certFile, keyFile string
	disableTLS                                                 bool
	addr, bridgeListPath, allowedPattern, legacyPattern        string
	geoipDB, geoip6DB                                          string
	disableGeoIP                                               bool
	metricsLog                                                 string
	metricsInterval                                            time.Duration
	ipCountPrefix                                              string
	ipCountInterval                                            time.Duration
	trustedHops                                                int
	pollIntervalFile, sqsName, sqsRegion, sqsProfiles          string
	clientTimeout, clientWait                                  time.Duration
	maxWaitingProxies, maxConnections                          int
	logPath                                                    string
	unsafeLogging                                              bool
}

func run(o options) error {
	logger, logCloser, err := scrub.OpenLogger(o.logPath, slog.LevelInfo, o.unsafeLogging)
	if err != nil {
		return err
	}
	defer logCloser.Close()
	if o.trustedHops < 0 {
		return fmt.Errorf("-trusted-hops %d: must be 0 or more", o.trustedHops)
	}
	if o.clientWait < 0 {
		return fmt.Errorf("-client-wait %v: must be 0 or more", o.clientWait)
	}
	if o.maxConnections < 0 {
		return fmt.Errorf("-max-connections %d: must be 0 (meaning %d) or more", o.maxConnections, broker.DefaultMaxConnections)
	}
	if o.ipCountInterval <= 0 {
		return fmt.Errorf("-ip-count-interval %v: must be positive", o.ipCountInterval)
	}
	// Flag combinations are checked before the slow work (geoip loading).
	switch {
	case o.acmeHostnames != "":
		if o.certFile != "" || o.keyFile != "" || o.disableTLS {
			return errors.New("-acme-hostnames excludes -cert, -key and -disable-tls")
		}
	case o.certFile != "" || o.keyFile != "":
		if o.certFile == "" || o.keyFile == "" || o.disableTLS || o.acmeEmail != "" {
			return errors.New("-cert and -key go together, without -disable-tls or -acme-email")
		}
	case o.disableTLS:
	default:
		return errors.New("one of -acme-hostnames, -cert and -key, or -disable-tls is required")
	}
	if o.sqsName != "" && o.sqsRegion == "" {
		return errors.New("-broker-sqs-name needs -broker-sqs-region")
	}
	trusted := o.trustedHops
	if trusted == 0 {
		trusted = broker.NoTrustedHops
	}
	clientWait := o.clientWait
	if clientWait == 0 {
		clientWait = -1 // the Config's "at once"; its zero is the default
	}

	cfg := broker.Config{
		Logger:              logger,
		AllowedRelayPattern: o.allowedPattern,
		LegacyRelayPattern:  o.legacyPattern,
		ClientTimeout:       o.clientTimeout,
		ClientWait:          clientWait,
		MaxWaitingProxies:   o.maxWaitingProxies,
		MaxConnections:      o.maxConnections,
		MetricsLogPath:      o.metricsLog,
		MetricsInterval:     o.metricsInterval,
		IPCountPrefix:       o.ipCountPrefix,
		IPCountInterval:     o.ipCountInterval,
		TrustedHops:         trusted,
	}
	if o.bridgeListPath != "" {
		f, err := os.Open(o.bridgeListPath)
		if err != nil {
			return fmt.Errorf("bridge list: %w", err)
		}
		cfg.Bridges, err = broker.ParseBridgeList(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	loadGeoIP := func() (*geoip.Table, error) {
		if o.disableGeoIP {
			return nil, nil
		}
		return geoip.Load(o.geoipDB, o.geoip6DB)
	}
	if cfg.GeoIP, err = loadGeoIP(); err != nil {
		return err
	}
	loadPollIntervals := func() (time.Duration, time.Duration, error) {
		if o.pollIntervalFile == "" {
			return 0, 0, nil
		}
		f, err := os.Open(o.pollIntervalFile)
		if err != nil {
			return 0, 0, fmt.Errorf("poll interval file: %w", err)
		}
		defer f.Close()
		return broker.ParsePollIntervals(f)
	}
	if cfg.NextPollUnrestricted, cfg.NextPollRestricted, err = loadPollIntervals(); err != nil {
		return err
	}

	// TLS: exactly one of ACME, -cert/-key, or -disable-tls (checked
	// above).
	switch {
	case o.acmeHostnames != "":
		host, _, err := net.SplitHostPort(o.addr)
		if err != nil {
			return fmt.Errorf("-addr: %w", err)
		}
		cfg.TLSConfig, cfg.HTTP01Handler = broker.ACME(strings.Split(o.acmeHostnames, ","), o.acmeEmail, o.acmeCertCache, logger)
		cfg.HTTP01Addr = net.JoinHostPort(host, "80")
	case o.certFile != "" || o.keyFile != "":
		tlsConfig, err := broker.TLSFromFiles(o.certFile, o.keyFile)
		if err != nil {
			return err
		}
		cfg.TLSConfig = tlsConfig
	}

	// A failure here is not fatal: the broker works, with fewer proxies.
	// Connections are capped below the limit (leaving room for files,
	// listeners and SQS), so that extra ones wait in the listen queue
	// instead of failing in accept.
	const spareFiles = 64
	if n, err := raiseFileLimit(); err != nil {
		logger.Warn("cannot raise the open-file limit", "err", err)
	} else if n > 2*spareFiles && n < uint64(cfg.MaxConnections)+spareFiles {
		cfg.MaxConnections = int(n) - spareFiles
		logger.Warn("open-file limit caps -max-connections", "limit", n, "max_connections", cfg.MaxConnections)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.sqsName != "" {
		sc := &broker.SQSConfig{QueueName: o.sqsName}
		// The SDK's default chain also honours AWS_ENDPOINT_URL_SQS, which
		// tests use to point the broker at a local server.
		profiles := []string{""}
		if o.sqsProfiles != "" {
			profiles = strings.Split(o.sqsProfiles, ",")
		}
		for _, p := range profiles {
			opts := []func(*config.LoadOptions) error{config.WithRegion(o.sqsRegion)}
			if p != "" {
				opts = append(opts, config.WithSharedConfigProfile(p))
			}
			awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
			if err != nil {
				return fmt.Errorf("AWS config (profile %q): %w", p, err)
			}
			sc.Clients = append(sc.Clients, sqs.NewFromConfig(awsCfg))
		}
		cfg.SQS = sc
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	cfg.Listener = ln
	b, err := broker.New(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	defer b.Close()

	// SIGHUP reloads the geoip databases and the poll intervals; a failed
	// reload keeps the old data.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if t, err := loadGeoIP(); err != nil {
				logger.Error("reload geoip", "err", err)
			} else {
				b.SetGeoIP(t)
				logger.Info("reloaded geoip databases")
			}
			if u, r, err := loadPollIntervals(); err != nil {
				logger.Error("reload poll intervals", "err", err)
			} else {
				b.SetNextPoll(u, r)
			}
		}
	}()

	// The listening line goes to standard error whatever -log says: it is
	// how scripts and tests know the broker is ready. The address is the
	// broker's own, so it is not scrubbed.
	fmt.Fprintf(os.Stderr, "snowflake-broker listening on %s\n", ln.Addr())
	logger.Info("listening", "tls", cfg.TLSConfig != nil, "sqs", cfg.SQS != nil)
	err = b.Run(ctx)
	stop()
	<-reloadDone
	return err
}
