package rendezvous

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/amp"
)

const pollBody = "1.0\n{\"offer\":\"o\",\"nat\":\"unknown\",\"fingerprint\":\"2B280B23E1107BB62ABFC40DDCC8824814F80A72\"}"

// seen records what a test broker received.
type seen struct {
	mu     sync.Mutex
	method string
	path   string
	host   string
	sni    string
	proto  string
	body   []byte
}

func (s *seen) handler(reply func(w http.ResponseWriter, r *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, MaxBodySize))
		s.mu.Lock()
		s.method, s.path, s.host, s.body, s.proto = r.Method, r.URL.Path, r.Host, b, r.Proto
		if r.TLS != nil {
			s.sni = r.TLS.ServerName
		}
		s.mu.Unlock()
		reply(w, r)
	})
}

// loopbackDial sends every connection to addr, whatever name was asked
// for, the way DNS would resolve a front to the CDN.
func loopbackDial(addr string, asked *[]string, mu *sync.Mutex) DialFunc {
	return func(ctx context.Context, network, a string) (net.Conn, error) {
		mu.Lock()
		*asked = append(*asked, a)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

func poolOf(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}

func TestHTTPExchange(t *testing.T) {
	var s seen
	srv := httptest.NewServer(s.handler(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"answer":"x"}`)
	}))
	defer srv.Close()
	rt, err := NewRoundTripper(TransportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHTTP(srv.URL+"/base/", nil, rt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.Exchange(context.Background(), []byte(pollBody))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"answer":"x"}` {
		t.Errorf("response %q", got)
	}
	if s.method != http.MethodPost || s.path != "/base/client" || string(s.body) != pollBody {
		t.Errorf("broker saw %s %s %q", s.method, s.path, s.body)
	}
}

func TestHTTPErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(error) bool
	}{
		{"status 500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) },
			func(err error) bool { var se *StatusError; return errors.As(err, &se) && se.Code == 500 }},
		{"status 503", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) },
			func(err error) bool { var se *StatusError; return errors.As(err, &se) && se.Code == 503 }},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", 302) },
			func(err error) bool { var se *StatusError; return errors.As(err, &se) && se.Code == 302 }},
		{"body too large", func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("a"), MaxBodySize+1)) },
			func(err error) bool { return errors.Is(err, ErrBodyTooLarge) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			rt, _ := NewRoundTripper(TransportConfig{})
			h, err := NewHTTP(srv.URL+"/", nil, rt)
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.Exchange(context.Background(), []byte(pollBody))
			if err == nil || !tc.check(err) {
				t.Fatalf("error = %v", err)
			}
		})
	}
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	rt, _ := NewRoundTripper(TransportConfig{})
	h, _ := NewHTTP(srv.URL+"/", nil, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := h.Exchange(ctx, []byte(pollBody)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want deadline exceeded", err)
	}
}

func TestNewHTTPBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x/", "http://", "://bad", "mailto:a@b"} {
		if _, err := NewHTTP(u, nil, http.DefaultTransport); err == nil {
			t.Errorf("NewHTTP(%q) accepted", u)
		}
	}
}

// TestFronting checks that the connection and SNI go to the front while the
// Host header names the broker, with crypto/tls and with uTLS over HTTP/1.1
// and HTTP/2.
func TestFronting(t *testing.T) {
	tests := []struct {
		name      string
		imitate   string
		http2     bool
		wantProto string
	}{
		{"crypto/tls h2", "", true, "HTTP/2.0"},
		{"crypto/tls h1", "", false, "HTTP/1.1"},
		{"utls chrome h2", "hellochrome_auto", true, "HTTP/2.0"},
		{"utls chrome h1 server", "HelloChrome_Auto", false, "HTTP/1.1"},
		{"utls randomized alpn h2", "hellorandomizedalpn", true, "HTTP/2.0"},
		{"utls randomized no alpn", "hellorandomizednoalpn", true, "HTTP/1.1"},
		{"utls firefox h2", "hellofirefox_auto", true, "HTTP/2.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s seen
			srv := httptest.NewUnstartedServer(s.handler(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"error":"no snowflake proxies currently available"}`)
			}))
			srv.EnableHTTP2 = tc.http2
			srv.StartTLS()
			defer srv.Close()
			// httptest's certificate is valid for example.com.
			var asked []string
			var mu sync.Mutex
			rt, err := NewRoundTripper(TransportConfig{
				RootCAs:     poolOf(srv),
				UTLSImitate: tc.imitate,
				Dial:        loopbackDial(srv.Listener.Addr().String(), &asked, &mu),
			})
			if err != nil {
				t.Fatal(err)
			}
			h, err := NewHTTP("https://broker.invalid/", []string{"example.com"}, rt)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ { // the second request reuses the decision
				if _, err := h.Exchange(context.Background(), []byte(pollBody)); err != nil {
					t.Fatalf("exchange %d: %v", i, err)
				}
			}
			if s.host != "broker.invalid" || s.sni != "example.com" || s.proto != tc.wantProto {
				t.Errorf("broker saw Host %q SNI %q proto %s; want broker.invalid, example.com, %s", s.host, s.sni, s.proto, tc.wantProto)
			}
			for _, a := range asked {
				if a != "example.com:443" {
					t.Errorf("dialled %q, want the front example.com:443", a)
				}
			}
		})
	}
}

func TestUTLSNoSNI(t *testing.T) {
	var s seen
	srv := httptest.NewUnstartedServer(s.handler(func(w http.ResponseWriter, r *http.Request) {}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	var asked []string
	var mu sync.Mutex
	rt, err := NewRoundTripper(TransportConfig{RootCAs: poolOf(srv), UTLSImitate: "hellochrome_auto", UTLSNoSNI: true,
		Dial: loopbackDial(srv.Listener.Addr().String(), &asked, &mu)})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := NewHTTP("https://example.com/", nil, rt)
	if _, err := h.Exchange(context.Background(), []byte(pollBody)); err != nil {
		t.Fatal(err)
	}
	if s.sni != "" {
		t.Errorf("server saw SNI %q, want none", s.sni)
	}
}

func TestUTLSRejectsBadCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	var asked []string
	var mu sync.Mutex
	for _, imitate := range []string{"", "hellorandomizedalpn"} {
		rt, _ := NewRoundTripper(TransportConfig{RootCAs: x509.NewCertPool(), UTLSImitate: imitate,
			Dial: loopbackDial(srv.Listener.Addr().String(), &asked, &mu)})
		h, _ := NewHTTP("https://example.com/", nil, rt)
		if _, err := h.Exchange(context.Background(), []byte(pollBody)); err == nil {
			t.Errorf("imitate %q: untrusted certificate accepted", imitate)
		}
	}
}

func TestParseClientHelloID(t *testing.T) {
	for name := range clientHelloIDs {
		if _, err := ParseClientHelloID(strings.ToUpper(name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, bad := range []string{"", "hellochrome", "firefox", "hellorandomized alpn"} {
		if _, err := ParseClientHelloID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := NewRoundTripper(TransportConfig{UTLSNoSNI: true}); err == nil {
		t.Error("utls-nosni without utls-imitate accepted")
	}
}

func TestSplitFronts(t *testing.T) {
	tests := map[string][]string{
		"":             nil,
		"a":            {"a"},
		"a,b":          {"a", "b"},
		" a , ,b,":     {"a", "b"},
		",,,":          nil,
		"x.example:44": {"x.example:44"},
	}
	for in, want := range tests {
		got := SplitFronts(in)
		if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Errorf("SplitFronts(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAMPExchange(t *testing.T) {
	var s seen
	var gotReq []byte
	srv := httptest.NewServer(s.handler(func(w http.ResponseWriter, r *http.Request) {
		// The cache URL path is /c/<broker host><broker path>.
		i := strings.Index(r.URL.Path, "/amp/client/")
		if i < 0 {
			http.Error(w, "bad path", 404)
			return
		}
		req, err := amp.DecodePath(r.URL.Path[i+len("/amp/client/"):])
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		gotReq = req
		w.Header().Set("Content-Type", "text/html")
		amp.Armor(w, []byte(`{"answer":"armored"}`))
	}))
	defer srv.Close()
	var asked []string
	var mu sync.Mutex
	rt, _ := NewRoundTripper(TransportConfig{Dial: loopbackDial(srv.Listener.Addr().String(), &asked, &mu)})
	a, err := NewAMP("http://broker.example/", "http://cache.example/", nil, rt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Exchange(context.Background(), []byte(pollBody))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"answer":"armored"}` || string(gotReq) != pollBody {
		t.Errorf("response %q, request %q", got, gotReq)
	}
	if s.method != http.MethodGet || s.host != "broker-example.cache.example" || !strings.HasPrefix(s.path, "/c/broker.example/amp/client/0") {
		t.Errorf("cache saw %s Host %q path %q", s.method, s.host, s.path)
	}
}

func TestAMPErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"not armored", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"answer":"plain"}`) }},
		{"wrong armor version", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html><body><pre>\n1eyJhbnN3ZXIiOiJ4In0=\n</pre></body></html>")
		}},
		{"bad base64", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html><body><pre>\n0!!!!\n</pre></body></html>")
		}},
		{"location header", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "http://127.0.0.1:1/")
			amp.Armor(w, []byte(`{"answer":"x"}`))
		}},
		{"status 404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			rt, _ := NewRoundTripper(TransportConfig{})
			// A cache URL that maps straight to the test server: any
			// path under it reaches the handler.
			a, err := NewAMP("http://broker.example/", srv.URL+"/", nil, rt)
			if err != nil {
				t.Fatal(err)
			}
			a.cacheURL.Host = srv.Listener.Addr().String()
			var asked []string
			var mu sync.Mutex
			rt2, _ := NewRoundTripper(TransportConfig{Dial: loopbackDial(srv.Listener.Addr().String(), &asked, &mu)})
			a.client.Transport = rt2
			if got, err := a.Exchange(context.Background(), []byte(pollBody)); err == nil {
				t.Fatalf("accepted, payload %q", got)
			}
		})
	}
}

func TestParseSQSCredentials(t *testing.T) {
	good := SQSCredentials{AccessKeyID: "AKID", SecretKey: "s3cr=t"}
	got, err := ParseSQSCredentials(good.Encode())
	if err != nil || got != good {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for name, bad := range map[string]string{
		"not base64":  "%%%",
		"not json":    "bm90IGpzb24=",
		"missing key": SQSCredentials{AccessKeyID: "AKID"}.Encode(),
		"empty":       "",
	} {
		if _, err := ParseSQSCredentials(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseSQSCredentials(f *testing.F) {
	f.Add(SQSCredentials{AccessKeyID: "a", SecretKey: "b"}.Encode())
	f.Add("eyJhd3MtYWNjZXNzLWtleS1pZCI6IiJ9")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseSQSCredentials(s)
		if err != nil {
			return
		}
		again, err := ParseSQSCredentials(c.Encode())
		if err != nil || again != c {
			t.Fatalf("re-encode of %+v: %+v, %v", c, again, err)
		}
	})
}

func TestSQSRegion(t *testing.T) {
	tests := map[string]string{
		"sqs.us-east-1.amazonaws.com":    "us-east-1",
		"sqs.eu-central-1.amazonaws.com": "eu-central-1",
		"127.0.0.1":                      "us-east-1",
		"sqs.amazonaws.com":              "us-east-1",
	}
	for host, want := range tests {
		if got := sqsRegion(host); got != want {
			t.Errorf("sqsRegion(%q) = %q, want %q", host, got, want)
		}
	}
}

func FuzzDecodeAMPBody(f *testing.F) {
	var armored bytes.Buffer
	amp.Armor(&armored, []byte(`{"answer":"x"}`))
	f.Add(armored.Bytes())
	f.Add([]byte("<pre>0eyJlcnJvciI6InkifQ==</pre>"))
	f.Add([]byte("<html><pre>1AAAA</pre><pre><pre>"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, body []byte) {
		payload, err := decodeAMPBody(body)
		if err != nil {
			return
		}
		if len(payload) > MaxBodySize {
			t.Fatalf("payload of %d bytes accepted", len(payload))
		}
		// Whatever decoded must survive a re-armoring round trip.
		var again bytes.Buffer
		if err := amp.Armor(&again, payload); err != nil {
			t.Fatal(err)
		}
		back, err := decodeAMPBody(again.Bytes())
		if err != nil || !bytes.Equal(back, payload) {
			t.Fatalf("round trip: %q, %v; want %q", back, err, payload)
		}
	})
}

// TestUTLSRandomizedRepeated: every randomized ClientHello must end in a
// working handshake (some randomizations pick groups uTLS cannot use and
// are retried).
func TestUTLSRandomizedRepeated(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	var asked []string
	var mu sync.Mutex
	for i := 0; i < 30; i++ {
		for _, id := range []string{"hellorandomizedalpn", "hellorandomizednoalpn"} {
			rt, err := NewRoundTripper(TransportConfig{RootCAs: poolOf(srv), UTLSImitate: id,
				Dial: loopbackDial(srv.Listener.Addr().String(), &asked, &mu)})
			if err != nil {
				t.Fatal(err)
			}
			h, _ := NewHTTP("https://example.com/", nil, rt)
			if _, err := h.Exchange(context.Background(), []byte(pollBody)); err != nil {
				t.Fatalf("%s attempt %d: %v", id, i, err)
			}
			rt.(*utlsRoundTripper).CloseIdleConnections()
		}
	}
}

func TestDefaultRootCAsHoldISRGRootX1(t *testing.T) {
	pool, err := DefaultRootCAs()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(isrgRootX1)
	if block == nil {
		t.Fatal("embedded ISRG Root X1 is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("ISRG Root X1 does not verify against the default roots: %v", err)
	}
}

// With no RootCAs the default roots are loaded lazily, at the first TLS
// handshake: plain HTTP works without them, and a certificate they do not
// cover is refused.
func TestDefaultRootsApplyAtHandshake(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"answer":"x"}`)
	})
	plainSrv := httptest.NewServer(handler)
	defer plainSrv.Close()
	tlsSrv := httptest.NewTLSServer(handler)
	defer tlsSrv.Close()
	var asked []string
	var mu sync.Mutex
	rt, err := NewRoundTripper(TransportConfig{Dial: loopbackDial(tlsSrv.Listener.Addr().String(), &asked, &mu)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHTTP("https://example.com/", nil, rt)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Exchange(context.Background(), []byte(pollBody))
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("httptest's certificate: got %v, want an unknown-authority error", err)
	}

	rt, err = NewRoundTripper(TransportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h, err = NewHTTP(plainSrv.URL+"/", nil, rt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Exchange(context.Background(), []byte(pollBody)); err != nil {
		t.Errorf("plain HTTP: %v", err)
	}
}

// TestAMPErrorKeepsRequestOut: an AMP request carries the whole poll
// request (the offer, whose candidates hold the client's addresses) in its
// URL, base64-encoded where log scrubbing cannot see it. An error that
// quoted the URL would put it in the client's log and tor's, so it must
// name only where the request went.
func TestAMPErrorKeepsRequestOut(t *testing.T) {
	offer := []byte(`1.0` + "\n" + `{"offer":"a=candidate:1 1 udp 1 203.0.113.5 40000 typ srflx","nat":"unknown"}`)
	encoded := base64.RawURLEncoding.EncodeToString(offer)
	refuse := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, errors.New("connection refused")
	}
	stall := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	for name, dial := range map[string]DialFunc{"refused": refuse, "stalled": stall} {
		t.Run(name, func(t *testing.T) {
			rt, err := NewRoundTripper(TransportConfig{Dial: dial})
			if err != nil {
				t.Fatal(err)
			}
			a, err := NewAMP("https://broker.example/", "https://cache.example/", []string{"front.example"}, rt)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_, err = a.Exchange(ctx, offer)
			if err == nil {
				t.Fatal("exchange succeeded through a failing dial")
			}
			if strings.Contains(err.Error(), encoded[:24]) || strings.Contains(err.Error(), "/amp/client/") {
				t.Errorf("error quotes the encoded poll request: %v", err)
			}
			if !strings.Contains(err.Error(), "front.example") {
				t.Errorf("error does not say where the request went: %v", err)
			}
		})
	}
}
