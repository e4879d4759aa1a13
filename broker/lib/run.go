package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/snowflake-go/snowflake/common/httplog"
)

// HTTP server limits. Proxies hold a request open for the poll hold and
// clients for the client wait plus the answer timeout, so the write
// timeout must exceed both (see writeTimeout).
const (
	// readHeaderTimeout defeats slowloris: headers are small and must
	// arrive at once.
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds header plus body (at most MaxBodySize bytes).
	readTimeout = 15 * time.Second
	// writeMargin is added to the longest hold for writing the response.
	writeMargin = 10 * time.Second
	// idleTimeout frees keep-alive connections between proxy polls.
	idleTimeout = 30 * time.Second
	// maxHeaderBytes: nothing legitimate sends large headers here.
	maxHeaderBytes = 16 << 10
	// shutdownTimeout bounds graceful shutdown; held polls end at once
	// when the broker closes, so this is ample.
	shutdownTimeout = 5 * time.Second
)

// newServer returns an http.Server with the broker's limits.
func (b *Broker) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      b.writeTimeout(),
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          httplog.ErrorLog(b.log.Handler()),
	}
}

// writeTimeout bounds a request from its headers to its response: the
// longest hold, a proxy poll's or a client poll's (which may wait for a
// proxy to poll, then for its answer), plus writeMargin.
func (b *Broker) writeTimeout() time.Duration {
	clientHold := b.cfg.ClientTimeout + max(b.cfg.ClientWait, 0)
	return max(b.cfg.ProxyPollTimeout, clientHold) + writeMargin
}

// Run serves the broker until ctx ends or Close is called: the HTTP(S) API
// (if Config.Listener or Config.Addr is set), the ACME HTTP-01 responder,
// the SQS rendezvous, the metrics log and the distinct-address reports. It returns after everything it
// started has stopped, with the first fatal error, or nil on a clean stop.
func (b *Broker) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	wg.Add(1)
	go func() {
		// Close (from any caller) stops Run.
		defer wg.Done()
		select {
		case <-b.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
		cancel()
	}
	serve := func(ln net.Listener, srv *http.Server, tlsConfig *tls.Config) {
		ln = newLimitListener(ln, b.cfg.MaxConnections)
		if tlsConfig != nil {
			ln = tls.NewListener(ln, tlsConfig)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fail(fmt.Errorf("broker: serve: %w", err))
			}
		}()
		go func() {
			defer wg.Done()
			<-ctx.Done()
			// Close first so held polls return, then drain.
			b.Close()
			sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer scancel()
			if err := srv.Shutdown(sctx); err != nil {
				srv.Close()
			}
		}()
	}

	ln := b.cfg.Listener
	if ln == nil && b.cfg.Addr != "" {
		var err error
		if ln, err = net.Listen("tcp", b.cfg.Addr); err != nil {
			return fmt.Errorf("broker: listen: %w", err)
		}
	}
	if ln != nil {
		srv := b.newServer(b.Handler())
		if b.cfg.TLSConfig != nil {
			// HTTP/2 over TLS as net/http would negotiate it.
			srv.TLSConfig = b.cfg.TLSConfig
		}
		serve(ln, srv, b.cfg.TLSConfig)
	}
	if b.cfg.HTTP01Addr != "" {
		ln01, err := net.Listen("tcp", b.cfg.HTTP01Addr)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("broker: ACME HTTP-01 listener: %w", err)
		}
		serve(ln01, b.newServer(b.cfg.HTTP01Handler), nil)
	}
	if b.cfg.SQS != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.runSQS(ctx); err != nil {
				fail(err)
			}
		}()
	}
	if b.cfg.MetricsLogPath != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.metricsLoop(ctx)
		}()
	}
	if b.ipCount != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.ipCountLoop(ctx)
		}()
	}
	<-ctx.Done()
	b.Close()
	wg.Wait()
	return firstErr
}

// metricsLoop appends a block to the metrics log every interval.
func (b *Broker) metricsLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.MetricsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := b.rotateMetrics(now); err != nil {
				b.log.Error("metrics log", "err", err)
			}
		}
	}
}

// ACME returns the TLS configuration and HTTP-01 challenge handler for
// certificates from Let's Encrypt for hostnames, cached in cacheDir. The
// handler must be served on port 80 (Config.HTTP01Addr/HTTP01Handler).
func ACME(hostnames []string, email, cacheDir string, logger *slog.Logger) (*tls.Config, http.Handler) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(hostnames...),
		Email:      email,
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		// Certificates still work, they are just fetched again after a
		// restart (and count against Let's Encrypt's rate limits).
		logger.Warn("ACME certificate cache unusable; not caching", "dir", cacheDir, "err", err)
	} else {
		m.Cache = autocert.DirCache(cacheDir)
	}
	cfg := m.TLSConfig()
	cfg.MinVersion = tls.VersionTLS12
	return cfg, m.HTTPHandler(nil)
}

// TLSFromFiles loads a certificate and key for Config.TLSConfig.
func TLSFromFiles(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("broker: TLS key pair: %w", err)
	}
	// h2 as net/http's ListenAndServeTLS would offer it: Run serves
	// HTTP/2 on a listener it wraps itself only when asked to.
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"}}, nil
}
