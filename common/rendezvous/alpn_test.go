package rendezvous

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// alpnServer is an HTTPS broker stand-in whose TLS layer offers, for its
// n-th connection, the ALPN protocols protos[n % len(protos)]: h2 only,
// http/1.1 only, or a server (or CDN edge) that changes between
// connections.
type alpnServer struct {
	addr  string
	pool  *x509.CertPool
	conns atomic.Int64

	mu     sync.Mutex
	protos []string // r.Proto of each request, in order
	body   []string // and its body
}

func startALPNServer(t *testing.T, protos ...[]string) *alpnServer {
	t.Helper()
	// Borrow httptest's certificate (valid for example.com).
	donor := httptest.NewTLSServer(http.NotFoundHandler())
	cert := donor.TLS.Certificates[0]
	s := &alpnServer{pool: poolOf(donor)}
	donor.Close()

	base := &tls.Config{Certificates: []tls.Certificate{cert}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		c.NextProtos = protos[int(s.conns.Add(1)-1)%len(protos)]
		return c, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(io.LimitReader(r.Body, MaxBodySize))
			s.mu.Lock()
			s.protos = append(s.protos, r.Proto)
			s.body = append(s.body, string(b))
			s.mu.Unlock()
			io.WriteString(w, `{"error":"no snowflake proxies currently available"}`)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(tls.NewListener(ln, base))
	}()
	t.Cleanup(func() { hs.Close(); <-done })
	return s
}

func (s *alpnServer) bodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.body...)
}

func (s *alpnServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.protos...)
}

// roundTripper is a uTLS round tripper imitating imitate, whose every dial
// goes to the server whatever the address.
func (s *alpnServer) roundTripper(t *testing.T, imitate string) http.RoundTripper {
	t.Helper()
	var asked []string
	var mu sync.Mutex
	rt, err := NewRoundTripper(TransportConfig{RootCAs: s.pool, UTLSImitate: imitate,
		Dial: loopbackDial(s.addr, &asked, &mu)})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// TestUTLSALPN: whatever the server negotiates from a browser hello that
// offers h2 and http/1.1, the request succeeds over the protocol that was
// negotiated, also when the same address changes its mind between
// connections.
func TestUTLSALPN(t *testing.T) {
	h2, h1 := []string{"h2"}, []string{"http/1.1"}
	tests := []struct {
		name   string
		protos [][]string
		want   []string // r.Proto of successive requests
	}{
		{"h2 only", [][]string{h2}, []string{"HTTP/2.0", "HTTP/2.0", "HTTP/2.0"}},
		{"http/1.1 only", [][]string{h1}, []string{"HTTP/1.1", "HTTP/1.1", "HTTP/1.1"}},
		{"h2 then http/1.1", [][]string{h2, h1}, []string{"HTTP/2.0", "HTTP/1.1", "HTTP/2.0", "HTTP/1.1", "HTTP/2.0"}},
		{"http/1.1 then h2", [][]string{h1, h2}, []string{"HTTP/1.1", "HTTP/2.0", "HTTP/1.1", "HTTP/2.0", "HTTP/1.1"}},
	}
	for _, imitate := range []string{ChromeName, "hellochrome_auto", "hellofirefox_auto", "helloios_auto", "hellorandomizedalpn"} {
		for _, tc := range tests {
			t.Run(imitate+"/"+tc.name, func(t *testing.T) {
				srv := startALPNServer(t, tc.protos...)
				rt := srv.roundTripper(t, imitate)
				h, err := NewHTTP("https://broker.invalid/", []string{"example.com"}, rt)
				if err != nil {
					t.Fatal(err)
				}
				for i := range tc.want {
					if _, err := h.Exchange(context.Background(), []byte(pollBody)); err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					// A new connection for the next request, as after an
					// idle timeout or a CDN closing it.
					rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
				}
				got := srv.seen()
				if imitate == "hellorandomizedalpn" {
					// A randomized hello may offer only http/1.1, and
					// some are retried, so which connection gets which
					// protocol varies; every request must still succeed.
					if len(got) != len(tc.want) {
						t.Fatalf("server saw %v for %d requests", got, len(tc.want))
					}
					return
				}
				if len(got) != len(tc.want) {
					t.Fatalf("server saw %v, want %v", got, tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Fatalf("server saw %v, want %v", got, tc.want)
					}
				}
				// No more handshakes than the mismatches need: one per
				// request.
				if n := srv.conns.Load(); n != int64(len(tc.want)) {
					t.Errorf("%d TLS connections for %d requests", n, len(tc.want))
				}
			})
		}
	}
}

// TestUTLSALPNKeepsConnections: without forced closes, successive requests
// share one connection of the negotiated protocol.
func TestUTLSALPNKeepsConnections(t *testing.T) {
	for _, protos := range [][]string{{"h2"}, {"http/1.1"}} {
		srv := startALPNServer(t, protos)
		rt := srv.roundTripper(t, "hellochrome_auto")
		h, _ := NewHTTP("https://example.com/", nil, rt)
		for i := 0; i < 5; i++ {
			if _, err := h.Exchange(context.Background(), []byte(pollBody)); err != nil {
				t.Fatalf("%v request %d: %v", protos, i, err)
			}
		}
		if n := srv.conns.Load(); n != 1 {
			t.Errorf("%v: %d connections for 5 sequential requests, want 1", protos, n)
		}
	}
}

// TestUTLSALPNBodyWithoutGetBody: a request whose body cannot be re-read
// by net/http (no GetBody, as the AWS SDK's) still survives the retry on
// the other HTTP version, with its body intact.
func TestUTLSALPNBodyWithoutGetBody(t *testing.T) {
	for _, protos := range [][]string{{"http/1.1"}, {"h2"}} {
		srv := startALPNServer(t, protos)
		rt := srv.roundTripper(t, "hellochrome_auto")
		// Both orders: the first request for an address tries HTTP/2.
		for i := 0; i < 3; i++ {
			body := io.NopCloser(struct{ io.Reader }{strings.NewReader(pollBody)})
			req, _ := http.NewRequest(http.MethodPost, "https://example.com/client", body)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatalf("%v request %d: %v", protos, i, err)
			}
			resp.Body.Close()
			rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
		}
		if got := srv.bodies(); len(got) != 3 || got[0] != pollBody || got[2] != pollBody {
			t.Errorf("%v: server got bodies %q", protos, got)
		}
	}
}
