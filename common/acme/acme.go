// Package acme gets TLS certificates from Let's Encrypt for the bridge
// server and the probe service, and answers Let's Encrypt's HTTP-01
// challenge for them on port 80.
package acme

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// Manager returns a certificate manager for hostnames that agrees to
// Let's Encrypt's terms and caches certificates in cacheDir.
func Manager(hostnames []string, email, cacheDir string) *autocert.Manager {
	return &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(hostnames...),
		Email:      email,
		Cache:      autocert.DirCache(cacheDir),
	}
}

// ServeHTTP01 answers m's HTTP-01 challenges on port 80 of host until ctx
// ends: the service itself may listen elsewhere, and Let's Encrypt checks
// TLS-ALPN-01 only on port 443. It returns the listener's address; a
// failure of the server after that, other than its closing, goes to errc.
func ServeHTTP01(ctx context.Context, m *autocert.Manager, host string, errLog *log.Logger, errc chan<- error) (net.Addr, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "80"))
	if err != nil {
		return nil, fmt.Errorf("ACME HTTP-01 listener: %w", err)
	}
	hs := &http.Server{
		Handler:           m.HTTPHandler(nil),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errLog,
	}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("ACME HTTP-01 listener: %w", err)
		}
	}()
	context.AfterFunc(ctx, func() { hs.Close() })
	return ln.Addr(), nil
}
