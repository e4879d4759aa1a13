package rendezvous

import (
	"bytes"
	"context"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	utls "github.com/refraction-networking/utls"

	"github.com/snowflake-go/snowflake/common/h2client"
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
	// [ParseClientHelloID]). Empty means [ChromeName], the built-in
	// Chromium 156 hello.
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
	// The default roots are loaded at the first TLS handshake, not here:
	// parsing the system's store costs a fresh process about 30 ms of CPU,
	// which a client pays for every SOCKS connection's transport, and a
	// plain-HTTP broker (a local or test deployment) never needs it.
	roots := func() (*x509.CertPool, error) { return cfg.RootCAs, nil }
	if cfg.RootCAs == nil {
		roots = sync.OnceValues(DefaultRootCAs)
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		cfg.Dial = d.DialContext
	}
	plain := &http.Transport{
		Proxy:                 nil,
		DialContext:           cfg.Dial,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: ResponseHeaderTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	if cfg.UTLSImitate == "" {
		// Upstream accepts utls-nosni only next to utls-imitate; keep
		// that, though the default hello is uTLS too.
		if cfg.UTLSNoSNI {
			return nil, fmt.Errorf("rendezvous: utls-nosni needs utls-imitate")
		}
		// Go's own ClientHello is what Iran blocked in 2022; the default
		// looks like current Chromium instead.
		cfg.UTLSImitate = ChromeName
	}
	id, err := ParseClientHelloID(cfg.UTLSImitate)
	if err != nil {
		return nil, err
	}
	return &utlsRoundTripper{cfg: cfg, roots: roots, id: id, plain: plain, hosts: map[string]*hostTransports{}}, nil
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
	ChromeName:              helloChrome156,
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
// hello offers h2 and http/1.1, so which HTTP version to speak is known only
// after each handshake, and a server (or a CDN edge behind one address) may
// answer differently from one connection to the next. Each address has an
// HTTP/1.1 and an HTTP/2 transport; a request goes to the one the last
// handshake chose, and a connection that negotiates the other protocol is
// handed to the other transport and the request retried there (wire
// protocol §3.3: up to 5 times).
type utlsRoundTripper struct {
	cfg   TransportConfig
	roots func() (*x509.CertPool, error) // cfg.RootCAs, or the defaults once loaded
	id    utls.ClientHelloID
	plain *http.Transport // for http:// URLs, which bypass uTLS

	mu    sync.Mutex // guards hosts and every hostTransports' fields
	hosts map[string]*hostTransports
}

// hostTransports are the two transports of one address. HTTP/2 is
// h2client's, which opens connections and frames requests as Chromium does
// (Go's own HTTP/2 client has a fingerprint of its own right after the
// handshake). It serves every utls-imitate mode: pairing a Firefox or
// randomized hello with Go's HTTP/2 would be no more consistent, and Go's
// is the one fingerprint that names a non-browser.
type hostTransports struct {
	h1 *http.Transport
	h2 *h2client.Transport

	useH2 bool               // the last handshake negotiated h2
	spare map[bool]spareConn // handshaken conns for the transport of that kind
}

// spareConn is a connection that negotiated the protocol of the transport
// that did not dial it, waiting for that transport's next dial.
type spareConn struct {
	conn net.Conn
	at   time.Time
}

// Retry and spare limits.
const (
	maxALPNTries = 5
	// spareMaxAge discards a waiting connection the server may well have
	// closed by now.
	spareMaxAge = 10 * time.Second
)

// errALPNMismatch means a new connection negotiated the other HTTP version
// than the transport that dialled it speaks; the connection is kept for the
// other transport.
var errALPNMismatch = errors.New("server negotiated the other HTTP version")

func (r *utlsRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return r.plain.RoundTrip(req)
	}
	h := r.host(canonicalAddr(req.URL.Host))
	req, err := replayable(req)
	if err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		r.mu.Lock()
		var rt http.RoundTripper = h.h1
		if h.useH2 {
			rt = h.h2
		}
		r.mu.Unlock()
		resp, err := rt.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		// A server that refuses a randomized hello may do so only after
		// the handshake, by closing the connection: the request then fails
		// on write, unprocessed, and goes again with a new hello.
		retry := errors.Is(err, errALPNMismatch) || r.randomized() && errors.Is(err, syscall.EPIPE)
		if !retry || try == maxALPNTries {
			return nil, fmt.Errorf("rendezvous: utls: %w", err)
		}
		// The transport closed the body; send a fresh copy.
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, fmt.Errorf("rendezvous: utls: %w (and the request body cannot be resent)", err)
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, fmt.Errorf("rendezvous: utls: resend body: %w", gerr)
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// maxReplayBody bounds the request bodies kept for a retry; rendezvous
// bodies (poll requests, SQS calls) are a few kilobytes.
const maxReplayBody = 1 << 20

// replayable returns req with a body that can be sent again (GetBody set),
// reading a body without GetBody (as the AWS SDK sends) into memory, so an
// ALPN retry does not depend on the caller.
func replayable(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody || req.GetBody != nil {
		return req, nil
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, maxReplayBody+1))
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("rendezvous: utls: read request body: %w", err)
	}
	if len(b) > maxReplayBody {
		return nil, fmt.Errorf("rendezvous: utls: request body over %d bytes", maxReplayBody)
	}
	req = req.Clone(req.Context())
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	req.Body, _ = req.GetBody()
	req.ContentLength = int64(len(b))
	return req, nil
}

// host returns the transports for addr, creating them on first use. A
// browser hello normally offers h2, so HTTP/2 is tried first; a server
// that picks HTTP/1.1 costs no extra handshake, as its connection is
// passed on.
func (r *utlsRoundTripper) host(addr string) *hostTransports {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.hosts[addr]; h != nil {
		return h
	}
	h := &hostTransports{useH2: true, spare: map[bool]spareConn{}}
	h.h1 = &http.Transport{
		Proxy: nil,
		DialTLSContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return r.dialFor(ctx, h, network, a, false)
		},
		ResponseHeaderTimeout: ResponseHeaderTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	h.h2 = &h2client.Transport{
		DialTLSContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return r.dialFor(ctx, h, network, a, true)
		},
		// Poll responses are far smaller; SQS answers too.
		Config: h2client.Config{MaxBodyBytes: maxReplayBody},
	}
	r.hosts[addr] = h
	return h
}

// dialFor returns a connection that speaks HTTP/2 (wantH2) or HTTP/1.1: a
// spare one of that kind, or a new one. A new one that negotiated the
// other protocol becomes the other kind's spare, and errALPNMismatch is
// returned so that RoundTrip retries with the other transport.
func (r *utlsRoundTripper) dialFor(ctx context.Context, h *hostTransports, network, addr string, wantH2 bool) (net.Conn, error) {
	r.mu.Lock()
	sp, ok := h.spare[wantH2]
	delete(h.spare, wantH2)
	r.mu.Unlock()
	if ok {
		if time.Since(sp.at) < spareMaxAge {
			return sp.conn, nil
		}
		sp.conn.Close()
	}
	uc, err := r.dialTLS(ctx, network, addr)
	if err != nil {
		return nil, err // not uc: a nil *UConn would be a non-nil net.Conn
	}
	gotH2 := uc.ConnectionState().NegotiatedProtocol == "h2"
	r.mu.Lock()
	defer r.mu.Unlock()
	h.useH2 = gotH2
	if gotH2 == wantH2 {
		return uc, nil
	}
	if old, ok := h.spare[gotH2]; ok {
		old.conn.Close()
	}
	h.spare[gotH2] = spareConn{conn: uc, at: time.Now()}
	return nil, errALPNMismatch
}

func (r *utlsRoundTripper) dialTLS(ctx context.Context, network, addr string) (*utls.UConn, error) {
	// A randomized fingerprint is a new random hello on every dial, and
	// some are unusable: uTLS cannot generate some key-share groups it
	// picks ("unsupported curve", uTLS issue 366), and some servers refuse
	// some combinations (handshake_failure). Such a handshake failure says
	// nothing about the server, so a randomized hello is redrawn a few
	// times; the other fingerprints fail at once.
	attempts := 1
	if r.randomized() {
		attempts = randomizedAttempts
	}
	var err error
	for range attempts {
		var uc *utls.UConn
		uc, err = r.dialTLSOnce(ctx, network, addr)
		if err == nil {
			return uc, nil
		}
		var he *handshakeError
		if !errors.As(err, &he) || ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// randomized reports whether every dial draws a new random hello.
func (r *utlsRoundTripper) randomized() bool { return strings.HasPrefix(r.id.Client, "Randomized") }

// randomizedAttempts bounds the handshakes tried with fresh randomized
// hellos for one connection.
const randomizedAttempts = 8

// handshakeError is a failed TLS handshake (as opposed to a failed dial).
type handshakeError struct {
	host string
	err  error
}

func (e *handshakeError) Error() string {
	return fmt.Sprintf("tls handshake with %s: %v", e.host, e.err)
}
func (e *handshakeError) Unwrap() error { return e.err }

func (r *utlsRoundTripper) dialTLSOnce(ctx context.Context, network, addr string) (*utls.UConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	roots, err := r.roots()
	if err != nil {
		return nil, err
	}
	raw, err := r.cfg.Dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conf := &utls.Config{RootCAs: roots, ServerName: host}
	if r.cfg.UTLSNoSNI && net.ParseIP(host) == nil {
		conf.ServerName = ""
		conf.InsecureServerNameToVerify = host
	}
	var uconn *utls.UConn
	if r.id == helloChrome156 {
		spec, err := ChromeSpec()
		if err != nil {
			raw.Close()
			return nil, err
		}
		uconn = utls.UClient(raw, conf, utls.HelloCustom)
		if err := uconn.ApplyPreset(spec); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls hello for %s: %w", host, err)
		}
	} else {
		uconn = utls.UClient(raw, conf, r.id)
	}
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := uconn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, &handshakeError{host: host, err: err}
	}
	return uconn, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// per-address transports and the spare connections.
func (r *utlsRoundTripper) CloseIdleConnections() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.hosts {
		for k, sp := range h.spare {
			sp.conn.Close()
			delete(h.spare, k)
		}
		h.h1.CloseIdleConnections()
		h.h2.CloseIdleConnections()
	}
	r.plain.CloseIdleConnections()
}

func canonicalAddr(hostport string) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	return net.JoinHostPort(strings.Trim(hostport, "[]"), "443")
}
