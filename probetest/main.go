// Command probetest is the Snowflake NAT probe service: proxies send it a
// WebRTC offer at start-up and learn from whether the connection opens
// whether their NAT is restricted. Deploy it behind a symmetric NAT.
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
	"strings"
	"syscall"
	"time"

	"github.com/snowflake-go/snowflake/common/acme"
	"github.com/snowflake-go/snowflake/common/httplog"
	"github.com/snowflake-go/snowflake/common/scrub"
	probetest "github.com/snowflake-go/snowflake/probetest/lib"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "probetest:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("probetest", flag.ExitOnError)
	var (
		addr          = fs.String("addr", ":8443", "listen address")
		acmeHostnames = fs.String("acme-hostnames", "", "comma-separated host names for Let's Encrypt certificates")
		acmeEmail     = fs.String("acme-email", "", "contact email for Let's Encrypt")
		acmeCache     = fs.String("acme-cert-cache", "acme-cert-cache", "directory of the certificate cache")
		certFile      = fs.String("cert", "", "TLS certificate file (instead of ACME)")
		keyFile       = fs.String("key", "", "TLS key file")
		disableTLS    = fs.Bool("disable-tls", false, "serve plain HTTP (behind a TLS-terminating front, or for tests)")
		stun          = fs.String("stun", "stun:stun.l.google.com:19302", "comma-separated STUN server URLs")
		keepLocal     = fs.Bool("keep-local-addresses", false, "keep local and loopback candidates in answers (tests)")
		logFile       = fs.String("log", "", "log file (appended; default stderr)")
		unsafeLogging = fs.Bool("unsafe-logging", false, "keep IP addresses in logs")
	)
	fs.Parse(os.Args[1:])

	logger, logCloser, err := scrub.OpenLogger(*logFile, slog.LevelInfo, *unsafeLogging)
	if err != nil {
		return err
	}
	defer logCloser.Close()

	cfg := probetest.Config{KeepLocalAddresses: *keepLocal, Logger: logger}
	for s := range strings.SplitSeq(*stun, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.STUNURLs = append(cfg.STUNURLs, s)
		}
	}
	s, err := probetest.New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()

	srv := &http.Server{
		Handler: s.Handler(),
		// A probe request waits for ICE gathering (up to 10 s).
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		// The server's own errors (TLS handshakes, bad requests) name the
		// remote address; they go through the scrubbing logger.
		ErrorLog: httplog.ErrorLog(logger.Handler()),
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 2) // the service and the HTTP-01 responder
	switch {
	case *disableTLS:
		logger.Info("listening", "addr", ln.Addr().String(), "tls", false)
		go func() { errc <- srv.Serve(ln) }()
	case *certFile != "" || *keyFile != "":
		logger.Info("listening", "addr", ln.Addr().String(), "tls", true)
		go func() { errc <- srv.ServeTLS(ln, *certFile, *keyFile) }()
	case *acmeHostnames != "":
		m := acme.Manager(strings.Split(*acmeHostnames, ","), *acmeEmail, *acmeCache)
		// The service listens on 8443, so certificates come through the
		// HTTP-01 challenge, answered on port 80 of the same host.
		host, _, err := net.SplitHostPort(*addr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("-addr: %w", err)
		}
		addr01, err := acme.ServeHTTP01(ctx, m, host, srv.ErrorLog, errc)
		if err != nil {
			ln.Close()
			return err
		}
		srv.TLSConfig = m.TLSConfig()
		logger.Info("listening", "addr", ln.Addr().String(), "tls", "acme", "http01", addr01.String())
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	default:
		ln.Close()
		return errors.New("need -acme-hostnames, -cert/-key, or -disable-tls")
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// End the probes first: one still gathering candidates can take
	// longer than Shutdown waits for its handler.
	s.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
