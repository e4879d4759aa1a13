// Command snowflake-proxy is the standalone Snowflake volunteer proxy. It
// polls the broker for clients and relays their WebRTC data channels to the
// Snowflake bridge. Flags match upstream's snowflake-proxy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/snowflake-go/snowflake/common/geoip"
	"github.com/snowflake-go/snowflake/common/httplog"
	"github.com/snowflake-go/snowflake/common/procs"
	"github.com/snowflake-go/snowflake/common/scrub"
	proxy "github.com/snowflake-go/snowflake/proxy/lib"
)

// version is reported by -version; set with -ldflags -X.
var version = "2.13.1-go"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "snowflake-proxy:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("snowflake-proxy", flag.ExitOnError)
	var (
		broker          = fs.String("broker", proxy.DefaultBrokerURL, "broker URL")
		relay           = fs.String("relay", proxy.DefaultRelayURL, "WebSocket URL of the default Snowflake bridge")
		stun            = fs.String("stun", proxy.DefaultSTUNURL, "comma-separated STUN server URLs")
		capacity        = fs.Uint("capacity", 0, "maximum concurrent clients (0 = unlimited)")
		pollInterval    = fs.Duration("poll-interval", proxy.DefaultPollInterval, "delay between broker polls that found no client (minimum 2s)")
		concurrentPolls = fs.Int("concurrent-polls", proxy.DefaultConcurrentPoll, "polls kept outstanding at the broker while capacity is free (1 = upstream behaviour)")
		natProbe        = fs.String("nat-probe-server", proxy.DefaultNATProbeURL, "NAT probe service URL (empty: skip the probe, NAT type unknown)")
		natRetest       = fs.Duration("nat-retest-interval", 24*time.Hour, "re-run the NAT probe this often (0 disables)")
		pattern         = fs.String("allowed-relay-hostname-pattern", proxy.DefaultRelayPattern, "accepted relay host names: a suffix, or ^exact; must end in $")
		allowNonTLS     = fs.Bool("allow-non-tls-relay", false, "accept ws:// relays as well as wss://")
		allowPrivate    = fs.Bool("allow-proxying-to-private-addresses", false, "accept relays at private, loopback and link-local IP addresses")
		keepLocal       = fs.Bool("keep-local-addresses", false, "keep local LAN and loopback ICE candidates")
		outbound        = fs.String("outbound-address", "", "announce this IP as the host candidate (NAT 1:1), for hosts behind 1:1 NAT")
		ephemeral       = fs.String("ephemeral-ports-range", "", "ICE UDP port range as min:max (default: any port)")
		summaryInterval = fs.Duration("summary-interval", time.Hour, "log a traffic summary this often (0 disables)")
		disableStats    = fs.Bool("disable-stats-logger", false, "do not log traffic summaries")
		geoipDB         = fs.String("geoipdb", "/usr/share/tor/geoip", "tor IPv4 geoip database, for client countries in summaries")
		geoip6DB        = fs.String("geoip6db", "/usr/share/tor/geoip6", "tor IPv6 geoip database")
		metrics         = fs.Bool("metrics", false, "serve Prometheus metrics at /internal/metrics")
		metricsAddress  = fs.String("metrics-address", "localhost", "metrics listen address")
		metricsPort     = fs.Int("metrics-port", 9999, "metrics listen port")
		logFile         = fs.String("log", "", "log file (appended; default stderr)")
		unsafeLogging   = fs.Bool("unsafe-logging", false, "keep IP addresses in logs")
		logLocalTime    = fs.Bool("log-local-time", false, "log timestamps in local time (default: UTC)")
		verbose         = fs.Bool("verbose", false, "log debug messages")
		showVersion     = fs.Bool("version", false, "display version info and quit")
		cpuProfile      = fs.String("cpuprofile", "", "write a Go CPU profile to this file until exit (for performance work)")
		idleTimeout     = fs.Duration("idle-timeout", proxy.DefaultIdleTimeout, "close a client when the relay sent nothing and the client drained nothing for this long")
		covertDTLS      = fs.String("covertdtls-config", "mimic", "DTLS handshake shape: mimic (Chromium's), randomize, randomizemimic or disable (pion's own)")
	)
	fs.Parse(args)
	if *showVersion {
		fmt.Printf("snowflake-proxy %s\n", version)
		return nil
	}
	// Checked here, not left to proxy.Config, whose zero value means the
	// default: like upstream, -poll-interval 0 is an error, not 5 s.
	if *pollInterval < proxy.MinPollInterval {
		return fmt.Errorf("-poll-interval %v is below the minimum %v", *pollInterval, proxy.MinPollInterval)
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	// Relaying allocates many short-lived packet buffers inside pion, about
	// twelve bytes per byte relayed; with the default GOGC=100 the
	// collector and the scavenger take about 15% of the proxy's CPU.
	// GOGC=400 avoids most of that, and a soft memory limit that follows
	// the live heap (memlimit.go) keeps a loaded proxy from growing to
	// five times its live data. GOGC=1600 was measured too: proxy CPU per
	// byte 5–10% lower, but a one-client proxy's peak RSS rose from 54 to
	// 119 MB, a poor trade for volunteers on small machines.
	tuneMemory := os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == ""
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger, logCloser, err := scrub.OpenLogger(*logFile, level, *unsafeLogging)
	if err != nil {
		return err
	}
	defer logCloser.Close()
	logger = slog.New(logTimes(logger.Handler(), *logLocalTime))

	cfg := proxy.Config{
		BrokerURL:         *broker,
		RelayURL:          *relay,
		NATProbeURL:       *natProbe,
		NATRetestInterval: *natRetest,
		Capacity:          int(*capacity),
		PollInterval:      *pollInterval,
		ConcurrentPolls:   *concurrentPolls,
		Relay: proxy.RelayPolicy{
			Pattern:      *pattern,
			AllowNonTLS:  *allowNonTLS,
			AllowPrivate: *allowPrivate,
		},
		KeepLocalAddresses: *keepLocal,
		OutboundAddress:    *outbound,
		IdleTimeout:        *idleTimeout,
		CovertDTLSConfig:   *covertDTLS,
		Logger:             logger,
	}
	cfg.STUNURLs = stunURLs(*stun)
	if *ephemeral != "" {
		lo, hi, err := parsePortRange(*ephemeral)
		if err != nil {
			return err
		}
		cfg.EphemeralPortMin, cfg.EphemeralPortMax = lo, hi
	}
	if *summaryInterval > 0 && !*disableStats && (*geoipDB != "" || *geoip6DB != "") {
		// A missing database only costs the country breakdown.
		if t, err := geoip.Load(existing(*geoipDB), existing(*geoip6DB)); err != nil {
			logger.Warn("geoip databases not loaded; summaries will have no countries", "err", err)
		} else if v4, v6 := t.Len(); v4+v6 > 0 {
			cfg.GeoIP = t
		}
	}

	p, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *metrics {
		addr := net.JoinHostPort(*metricsAddress, strconv.Itoa(*metricsPort))
		stopMetrics, _, err := serveMetrics(addr, p, logger)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	// Background loops end with ctx; the deferred wait ends ctx first, so
	// that they also end when Run returns on its own.
	var background sync.WaitGroup
	defer func() { stop(); background.Wait() }()
	if tuneMemory {
		background.Go(func() { tuneMemoryLimit(ctx) })
	}
	if scaler := procs.New(logger); scaler != nil {
		background.Go(func() { scaler.Run(ctx) })
	}
	if *summaryInterval > 0 && !*disableStats {
		background.Go(func() { summaries(ctx, p, *summaryInterval, logger) })
	}
	return p.Run(ctx)
}

// existing returns path if the file exists, else "" (skip that family).
func existing(path string) string {
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

func parsePortRange(s string) (uint16, uint16, error) {
	a, b, ok := strings.Cut(s, ":")
	lo, err1 := strconv.ParseUint(a, 10, 16)
	hi, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil || lo == 0 || lo > hi {
		return 0, 0, fmt.Errorf("-ephemeral-ports-range %q: want min:max with 0 < min <= max <= 65535", s)
	}
	return uint16(lo), uint16(hi), nil
}

// summaries logs, every interval, the connections and traffic of the last
// interval. It returns when ctx is done.
func summaries(ctx context.Context, p *proxy.Proxy, every time.Duration, logger *slog.Logger) {
	st := p.Stats()
	t := time.NewTicker(every)
	defer t.Stop()
	var lastConns, lastUp, lastDown int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		conns, up, down := st.Connections.Load(), st.BytesUp.Load(), st.BytesDown.Load()
		countries := st.TakeCountries()
		cc := make([]string, 0, len(countries))
		for c, n := range countries {
			cc = append(cc, fmt.Sprintf("%s=%d", c, n))
		}
		sort.Strings(cc)
		logger.Info(summaryText(every, conns-lastConns, down-lastDown, up-lastUp),
			"interval", every, "connections", conns-lastConns,
			"bytes_up", up-lastUp, "bytes_down", down-lastDown, "active", st.Active.Load(),
			"nat", p.NAT(), "countries", strings.Join(cc, ","))
		lastConns, lastUp, lastDown = conns, up, down
	}
}

// summaryText is the summary's message in the words of upstream's proxy,
// which volunteers' dashboards and scripts (Umbrel's, for one) read from
// the log: connections, then the traffic to clients (↓) and from them (↑)
// in KB and KB/s.
func summaryText(every time.Duration, conns, down, up int64) string {
	kb := func(n int64) int64 { return n / 1024 }
	rate := func(n int64) float64 { return float64(n) / 1024 / every.Seconds() }
	return fmt.Sprintf("In the last %v, there were %d completed successful connections. Traffic Relayed ↓ %d KB (%.2f KB/s), ↑ %d KB (%.2f KB/s).",
		every, conns, kb(down), rate(down), kb(up), rate(up))
}

// serveMetrics serves Prometheus metrics at /internal/metrics with
// upstream's names (tor_snowflake_proxy_*) on its own mux with timeouts,
// and returns a function that stops it (and waits), and its address.
func serveMetrics(addr string, p *proxy.Proxy, logger *slog.Logger) (func(), string, error) {
	reg := prometheus.NewRegistry()
	st := p.Stats()
	counter := func(name, help string, f func() int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "tor", Subsystem: "snowflake_proxy", Name: name, Help: help,
		}, func() float64 { return float64(f()) }))
	}
	counter("connections_total", "client connections relayed", st.Connections.Load)
	counter("failed_connections_total", "matched clients that were not served", st.Failed.Load)
	counter("polls_total", "broker polls sent", st.Polls.Load)
	counter("poll_errors_total", "failed broker polls", st.PollErrors.Load)
	counter("matches_total", "polls that returned a client", st.Matches.Load)
	// Upstream names the directions as its summary's arrows do, from the
	// Tor user's side: inbound is what the relay sends the clients (↓),
	// outbound what the clients send (↑). Dashboards built on upstream's
	// proxy rely on that.
	counter("traffic_inbound_bytes_total", "bytes from the relay to clients", st.BytesDown.Load)
	counter("traffic_outbound_bytes_total", "bytes from clients to the relay", st.BytesUp.Load)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "tor", Subsystem: "snowflake_proxy", Name: "active_connections", Help: "clients being relayed",
	}, func() float64 { return float64(st.Active.Load()) }))

	mux := http.NewServeMux()
	mux.Handle("/internal/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// The status page (doc/proxy.md) shares the metrics address.
	mux.Handle("/", p.StatusPage())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics: %w", err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          httplog.ErrorLog(logger.Handler()),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server", "err", err)
		}
	}()
	logger.Info("metrics listening", "addr", ln.Addr().String())
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}
	return stop, ln.Addr().String(), nil
}

// logTimes returns h, or, unless local, h with every record's time in UTC:
// upstream's proxy logs in UTC unless -log-local-time is given.
func logTimes(h slog.Handler, local bool) slog.Handler {
	if local {
		return h
	}
	return utcHandler{h}
}

// utcHandler passes records on with their time in UTC.
type utcHandler struct{ slog.Handler }

func (h utcHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Time = r.Time.UTC()
	return h.Handler.Handle(ctx, r)
}

func (h utcHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return utcHandler{h.Handler.WithAttrs(attrs)}
}

func (h utcHandler) WithGroup(name string) slog.Handler {
	return utcHandler{h.Handler.WithGroup(name)}
}

// stunURLs splits the -stun list. A list with no URL in it means the
// default servers, as with upstream's proxy: a proxy without STUN cannot
// learn its public address behind a NAT, and an empty value is more
// likely an unset variable in a service file than a wish for none.
func stunURLs(list string) []string {
	var urls []string
	for s := range strings.SplitSeq(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			urls = append(urls, s)
		}
	}
	if len(urls) == 0 {
		return stunURLs(proxy.DefaultSTUNURL)
	}
	return urls
}
