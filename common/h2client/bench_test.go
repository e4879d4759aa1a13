package h2client

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// BenchmarkRoundTrip: one poll-sized POST and its small answer over an
// established TLS connection to net/http's HTTP/2 server, with this
// package's Transport and with x/net's (which the rendezvous used before).
// Both dial the same crypto/tls client, so the difference is the HTTP/2
// client alone.
func BenchmarkRoundTrip(b *testing.B) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"status":"client match","answer":"`+strings.Repeat("a", 600)+`"}`)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	conf := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	conf.NextProtos = []string{"h2"}
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		d := tls.Dialer{Config: conf}
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}
	body := strings.Repeat("p", 90)
	transports := []struct {
		name string
		rt   http.RoundTripper
	}{
		{"h2client", &Transport{DialTLSContext: dial}},
		{"xnet-http2", &http2.Transport{DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return dial(ctx, network, addr)
		}}},
	}
	for _, tc := range transports {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("POST", "https://example.com/client", strings.NewReader(body))
				resp, err := tc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
		tc.rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	}
}
