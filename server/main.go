// Command snowflake-server is the Snowflake bridge server. It accepts
// WebSocket connections from Snowflake proxies and hands the client
// sessions they carry to tor.
//
// Normally tor runs it as a managed pluggable transport (ServerTransportPlugin
// snowflake exec snowflake-server ...), configured through TOR_PT_*
// variables; options come from ServerTransportOptions (num-turbotunnel,
// orport-srcaddr). With -listen and -orport it runs standalone, connecting
// each stream to a plain ORPort, for operators without tor in front and for
// tests and demos.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	pt "gitlab.torproject.org/tpo/anti-censorship/pluggable-transports/goptlib"

	"github.com/snowflake-go/snowflake/common/acme"
	"github.com/snowflake-go/snowflake/common/httplog"
	"github.com/snowflake-go/snowflake/common/procs"
	"github.com/snowflake-go/snowflake/common/rawsock"
	"github.com/snowflake-go/snowflake/common/scrub"
	"github.com/snowflake-go/snowflake/server/extorport"
	server "github.com/snowflake-go/snowflake/server/lib"
)

// version is reported by -version and to tor; set with -ldflags -X.
var version = "2.13.1-go"

const ptMethodName = "snowflake"

// options are the command-line settings.
type options struct {
	acmeEmail, acmeHostnames, acmeCertCache string
	disableTLS                              bool
	logFile                                 string
	unsafeLogging                           bool
	numTurbotunnel                          int
	listen, orport                          string
	metricsAddr                             string
	statsInterval                           time.Duration
	maxConns                                int
}

func main() {
	var o options
	fs := flag.NewFlagSet("snowflake-server", flag.ExitOnError)
	fs.StringVar(&o.acmeEmail, "acme-email", "", "optional contact email for Let's Encrypt notifications")
	fs.StringVar(&o.acmeHostnames, "acme-hostnames", "", "comma-separated hostnames for the TLS certificate (required unless -disable-tls)")
	fs.StringVar(&o.acmeCertCache, "acme-cert-cache", "", "directory caching ACME certificates (default: snowflake-certificate-cache in the PT state directory)")
	fs.BoolVar(&o.disableTLS, "disable-tls", false, "serve plain WebSocket (ws://) without TLS, e.g. behind a TLS-terminating reverse proxy")
	fs.StringVar(&o.logFile, "log", "", "log file (default: standard error)")
	fs.BoolVar(&o.unsafeLogging, "unsafe-logging", false, "keep IP addresses in the log (do not use in production)")
	showVersion := fs.Bool("version", false, "display version info and quit")
	fs.IntVar(&o.numTurbotunnel, "num-turbotunnel", 0, "number of KCP state machines to shard sessions over (default: number of usable CPUs; ServerTransportOptions num-turbotunnel overrides)")
	fs.StringVar(&o.listen, "listen", "", "standalone mode: WebSocket listen address host:port (requires -orport)")
	fs.StringVar(&o.orport, "orport", "", "standalone mode: tor ORPort address host:port each stream is connected to")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "optional host:port serving Prometheus metrics at /metrics")
	fs.DurationVar(&o.statsInterval, "stats-interval", time.Hour, "interval between statistics lines in the log (0 disables)")
	fs.IntVar(&o.maxConns, "max-conns", server.DefaultMaxConns, "maximum concurrent WebSocket connections")
	fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Printf("snowflake-server %s\n", version)
		return
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "snowflake-server: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "snowflake-server: %v\n", err)
		os.Exit(1)
	}
}

func newLogger(o options) (*slog.Logger, io.Closer, error) {
	return scrub.OpenLogger(o.logFile, slog.LevelInfo, o.unsafeLogging)
}

func run(o options) error {
	logger, closer, err := newLogger(o)
	if err != nil {
		return err
	}
	defer closer.Close()
	if o.numTurbotunnel < 0 {
		return fmt.Errorf("-num-turbotunnel must be positive")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The scaler ends with ctx; the deferred wait ends ctx first, so that
	// it also ends when the server returns on its own.
	var background sync.WaitGroup
	defer func() { stop(); background.Wait() }()
	if scaler := procs.New(logger); scaler != nil {
		// The shard count's default follows the CPUs, not the Ps the
		// scaler starts with.
		if o.numTurbotunnel == 0 {
			o.numTurbotunnel = runtime.GOMAXPROCS(0)
		}
		// One P while that suffices (common/procs).
		background.Go(func() { scaler.Run(ctx) })
	}
	if o.listen != "" {
		return runStandalone(ctx, o, logger)
	}
	return runManaged(ctx, o, logger)
}

// tlsWrap returns ln wrapped in TLS with ACME certificates, unless TLS is
// disabled. The ACME HTTP-01 challenge listener on port 80 of host runs
// until ctx ends.
func tlsWrap(ctx context.Context, o options, ln net.Listener, host, stateDir string, logger *slog.Logger, errc chan<- error) (net.Listener, error) {
	if o.disableTLS {
		return ln, nil
	}
	if o.acmeHostnames == "" {
		return nil, errors.New("-acme-hostnames is required unless -disable-tls is given")
	}
	cacheDir := o.acmeCertCache
	if cacheDir == "" {
		cacheDir = filepath.Join(stateDir, "snowflake-certificate-cache")
	}
	m := acme.Manager(strings.Split(o.acmeHostnames, ","), o.acmeEmail, cacheDir)
	if _, err := acme.ServeHTTP01(ctx, m, host, httplog.ErrorLog(logger.Handler()), errc); err != nil {
		return nil, err
	}
	logger.Info("ACME enabled", "hostnames", o.acmeHostnames)
	cfg := m.TLSConfig()
	return tls.NewListener(ln, cfg), nil
}

// serveAll runs srv on every listener, plus the metrics endpoint and the
// stats logger, until ctx ends or one of them fails.
func serveAll(ctx context.Context, o options, srv *server.Server, lns []net.Listener, logger *slog.Logger, errc chan error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, ln := range lns {
		go func() { errc <- srv.Serve(ctx, ln) }()
	}
	if o.metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(srv.Collector(), collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10,
			ErrorLog: httplog.ErrorLog(logger.Handler())}
		go hs.Serve(mln)
		defer hs.Close()
		logger.Info("metrics listening", "addr", mln.Addr().String())
	}
	if o.statsInterval > 0 {
		go srv.LogStats(ctx, o.statsInterval)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	srv.Close()
	return err
}

func runStandalone(ctx context.Context, o options, logger *slog.Logger) error {
	if o.orport == "" {
		return errors.New("-listen needs -orport")
	}
	dialer := &server.ORDialer{ORAddr: o.orport}
	srv, err := server.New(server.Config{
		Logger: logger, DialOR: dialer.Dial, NumTurbotunnel: o.numTurbotunnel, MaxConns: o.maxConns,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ln = rawsock.Listener(ln)
	errc := make(chan error, 4)
	host, _, _ := net.SplitHostPort(o.listen)
	wrapped, err := tlsWrap(ctx, o, ln, host, ".", logger, errc)
	if err != nil {
		ln.Close()
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "tls", !o.disableTLS, "shards", srv.NumShards(), "version", version)
	return serveAll(ctx, o, srv, []net.Listener{wrapped}, logger, errc)
}

// smethodArgs are the ARGS of the SMETHOD line: whether the server speaks
// TLS, and for which host names. tor publishes them in the bridge's
// extra-info descriptor; upstream's server reports the same keys.
func smethodArgs(o options) pt.Args {
	args := pt.Args{}
	if o.disableTLS {
		args.Add("tls", "no")
		return args
	}
	args.Add("tls", "yes")
	for _, h := range strings.Split(o.acmeHostnames, ",") {
		args.Add("hostname", h)
	}
	return args
}

func runManaged(ctx context.Context, o options, logger *slog.Logger) (err error) {
	info, err := pt.ServerSetup(nil)
	if err != nil {
		return fmt.Errorf("PT setup: %w", err) // goptlib told tor (ENV-ERROR)
	}
	// tor shows what a managed transport prints on standard output, not
	// necessarily its log: say there why the server stops (an unreadable
	// auth cookie, say), or tor only sees the process end.
	defer func() {
		if err != nil {
			msg := err.Error()
			if !o.unsafeLogging {
				msg = scrub.String(msg)
			}
			pt.Log(pt.LogSeverityError, "snowflake-server: "+msg)
		}
	}()
	pt.ReportVersion("snowflake-server", version)
	dialer := &server.ORDialer{Transport: ptMethodName}
	if info.OrAddr != nil {
		dialer.ORAddr = info.OrAddr.String()
	}
	if info.ExtendedOrAddr != nil {
		dialer.ExtORAddr = info.ExtendedOrAddr.String()
		// The dialer rereads the file for every connection, since tor may
		// write a new cookie; reading it now reports a wrong path or
		// content at once, to tor, rather than on every stream.
		if _, err = extorport.ReadCookieFile(info.AuthCookiePath); err != nil {
			return err
		}
		dialer.CookieFile = info.AuthCookiePath
	}
	stateDir, err := pt.MakeStateDir()
	if err != nil {
		return fmt.Errorf("PT state directory: %w", err)
	}
	if os.Getenv("TOR_PT_EXIT_ON_STDIN_CLOSE") == "1" {
		// tor closes our stdin to tell us to exit.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	}

	numTurbotunnel := o.numTurbotunnel
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	errc := make(chan error, 8)
	for _, b := range info.Bindaddrs {
		if b.MethodName != ptMethodName {
			pt.SmethodError(b.MethodName, "no such method")
			continue
		}
		if v, ok := b.Options.Get("num-turbotunnel"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				pt.SmethodError(b.MethodName, "num-turbotunnel must be a positive integer")
				continue
			}
			numTurbotunnel = n
		}
		if v, ok := b.Options.Get("orport-srcaddr"); ok {
			p, err := server.ParseSourcePrefix(v)
			if err != nil {
				pt.SmethodError(b.MethodName, err.Error())
				continue
			}
			dialer.Source = p
		}
		if b.Addr.Port == 0 {
			// A random port would not match the bridge line clients use.
			pt.SmethodError(b.MethodName, "a listening port must be given (ServerTransportListenAddr)")
			continue
		}
		ln, err := net.ListenTCP("tcp", b.Addr)
		if err != nil {
			pt.SmethodError(b.MethodName, err.Error())
			continue
		}
		wrapped, err := tlsWrap(ctx, o, ln, b.Addr.IP.String(), stateDir, logger, errc)
		if err != nil {
			ln.Close()
			pt.SmethodError(b.MethodName, err.Error())
			continue
		}
		lns = append(lns, wrapped)
		pt.SmethodArgs(b.MethodName, ln.Addr(), smethodArgs(o))
	}
	pt.SmethodsDone()
	if len(lns) == 0 {
		return errors.New("no transport could be started")
	}
	srv, err := server.New(server.Config{
		Logger: logger, DialOR: dialer.Dial, NumTurbotunnel: numTurbotunnel, MaxConns: o.maxConns,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	logger.Info("listening", "transports", len(lns), "extorport", dialer.ExtORAddr != "",
		"shards", srv.NumShards(), "version", version)
	return serveAll(ctx, o, srv, lns, logger, errc)
}
