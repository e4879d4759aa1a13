package rendezvous

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	utls "github.com/refraction-networking/utls"
	"golang.org/x/net/http2"
)

// ResponseHeaderTimeout bounds the wait for a broker's response headers on
// the HTTP and AMP methods. The broker answers within 5–10 s of matching.
const ResponseHeaderTimeout = 15 * time.Second

// isrgRootX1 is Let's Encrypt's root, added to the system pool because the
// broker's certificate chains to it and some client systems (old Windows,
// Android) lack it.
//
//go:embed isrg-root-x1.pem
var isrgRootX1 []byte

// DialFunc opens a stream connection; it is the seam for tests (mapping
// front names to loopback) and for an upstream proxy.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// TransportConfig configures [NewRoundTripper].
type TransportConfig struct {
	// RootCAs verifies broker and front certificates. Nil means the system
	// roots plus Let's Encrypt ISRG Root X1.
	RootCAs *x509.CertPool
	// UTLSImitate names the browser ClientHello to imitate (see
	// [ParseClientHelloID]). Empty uses Go's crypto/tls.
	UTLSImitate string
	// UTLSNoSNI leaves the server name out of the ClientHello (uTLS only);
	// the certificate is still verified against the URL's host.
	UTLSNoSNI bool
	// Dial opens TCP connections. Nil uses a net.Dialer.
	Dial DialFunc
}

// DefaultRootCAs returns the system pool plus ISRG Root X1.
func DefaultRootCAs() (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(isrgRootX1) {
		return nil, fmt.Errorf("rendezvous: embedded ISRG Root X1 does not parse")
	}
	return pool, nil
}

// NewRoundTripper returns the http.RoundTripper used for broker requests.
// The process's proxy environment (HTTPS_PROXY, ...) is deliberately
// ignored: a PT must not send rendezvous traffic anywhere tor did not ask.
func NewRoundTripper(cfg TransportConfig) (http.RoundTripper, error) {
	if cfg.RootCAs == nil {
		pool, err := DefaultRootCAs()
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		cfg.Dial = d.DialContext
	}
	plain := &http.Transport{
		Proxy:                 nil,
		DialContext:           cfg.Dial,
		TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: ResponseHeaderTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	if cfg.UTLSImitate == "" {
		if cfg.UTLSNoSNI {
			return nil, fmt.Errorf("rendezvous: utls-nosni needs utls-imitate")
		}
		return plain, nil
	}
	id, err := ParseClientHelloID(cfg.UTLSImitate)
	if err != nil {
		return nil, err
	}
	return &utlsRoundTripper{cfg: cfg, id: id, plain: plain, byAddr: map[string]http.RoundTripper{}, spare: map[string]net.Conn{}}, nil
}

// clientHelloIDs maps the utls-imitate names deployed bridge lines use
// (case-insensitive) to uTLS fingerprints.
var clientHelloIDs = map[string]utls.ClientHelloID{
	"hellorandomizedalpn":   utls.HelloRandomizedALPN,
	"hellorandomizednoalpn": utls.HelloRandomizedNoALPN,
	"hellofirefox_auto":     utls.HelloFirefox_Auto,
	"hellofirefox_55":       utls.HelloFirefox_55,
	"hellofirefox_56":       utls.HelloFirefox_56,
	"hellofirefox_63":       utls.HelloFirefox_63,
	"hellofirefox_65":       utls.HelloFirefox_65,
	"hellochrome_auto":      utls.HelloChrome_Auto,
	"hellochrome_58":        utls.HelloChrome_58,
	"hellochrome_62":        utls.HelloChrome_62,
	"hellochrome_70":        utls.HelloChrome_70,
	"hellochrome_72":        utls.HelloChrome_72,
	"helloios_auto":         utls.HelloIOS_Auto,
	"helloios_11_1":         utls.HelloIOS_11_1,
	"helloios_12_1":         utls.HelloIOS_12_1,
}

// ParseClientHelloID returns the uTLS fingerprint for a utls-imitate name.
func ParseClientHelloID(name string) (utls.ClientHelloID, error) {
	id, ok := clientHelloIDs[strings.ToLower(name)]
	if !ok {
		return utls.ClientHelloID{}, fmt.Errorf("rendezvous: unknown utls-imitate name %q", name)
	}
	return id, nil
}

// utlsRoundTripper speaks HTTPS with a browser-like ClientHello. A browser
// hello offers h2, so which HTTP version to speak is only known after the
// handshake: the first connection to each address decides, and is handed
// to the HTTP/1.1 or HTTP/2 transport chosen for that address.
type utlsRoundTripper struct {
	cfg   TransportConfig
	id    utls.ClientHelloID
	plain *http.Transport // for http:// URLs, which bypass uTLS

	mu     sync.Mutex // guards the following fields
	byAddr map[string]http.RoundTripper
	spare  map[string]net.Conn // handshaken conns waiting for their transport's first dial
}

func (r *utlsRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return r.plain.RoundTrip(req)
	}
	addr := canonicalAddr(req.URL.Host)
	r.mu.Lock()
	rt := r.byAddr[addr]
	r.mu.Unlock()
	if rt == nil {
		conn, err := r.dialTLS(req.Context(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("rendezvous: utls: %w", err)
		}
		if conn.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
			rt = &http2.Transport{
				DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
					return r.dialSpareOrNew(ctx, network, addr)
				},
				ReadIdleTimeout: 30 * time.Second,
			}
		} else {
			rt = &http.Transport{
				Proxy:                 nil,
				DialTLSContext:        r.dialSpareOrNew,
				ResponseHeaderTimeout: ResponseHeaderTimeout,
				IdleConnTimeout:       90 * time.Second,
				MaxIdleConnsPerHost:   2,
			}
		}
		r.mu.Lock()
		if existing := r.byAddr[addr]; existing != nil {
			// Another request decided first; ours is not needed.
			r.mu.Unlock()
			conn.Close()
			rt = existing
		} else {
			if old := r.spare[addr]; old != nil {
				old.Close()
			}
			r.spare[addr] = conn
			r.byAddr[addr] = rt
			r.mu.Unlock()
		}
	}
	return rt.RoundTrip(req)
}

func (r *utlsRoundTripper) dialSpareOrNew(ctx context.Context, network, addr string) (net.Conn, error) {
	r.mu.Lock()
	c := r.spare[addr]
	delete(r.spare, addr)
	r.mu.Unlock()
	if c != nil {
		return c, nil
	}
	uc, err := r.dialTLS(ctx, network, addr)
	if err != nil {
		return nil, err // not uc: a nil *UConn would be a non-nil net.Conn
	}
	return uc, nil
}

func (r *utlsRoundTripper) dialTLS(ctx context.Context, network, addr string) (*utls.UConn, error) {
	// A randomized fingerprint sometimes picks a key-share group that
	// uTLS itself cannot generate, failing before anything is sent; a new
	// randomization usually works.
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		var uc *utls.UConn
		uc, err = r.dialTLSOnce(ctx, network, addr)
		if err == nil {
			return uc, nil
		}
		if !strings.Contains(err.Error(), "unsupported curve") || ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func (r *utlsRoundTripper) dialTLSOnce(ctx context.Context, network, addr string) (*utls.UConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	raw, err := r.cfg.Dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conf := &utls.Config{RootCAs: r.cfg.RootCAs, ServerName: host}
	if r.cfg.UTLSNoSNI && net.ParseIP(host) == nil {
		conf.ServerName = ""
		conf.InsecureServerNameToVerify = host
	}
	uconn := utls.UClient(raw, conf, r.id)
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := uconn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", host, err)
	}
	return uconn, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// per-address transports.
func (r *utlsRoundTripper) CloseIdleConnections() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.spare {
		c.Close()
	}
	clear(r.spare)
	for _, rt := range r.byAddr {
		if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
	r.plain.CloseIdleConnections()
}

func canonicalAddr(hostport string) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	return net.JoinHostPort(strings.Trim(hostport, "[]"), "443")
}
