package rendezvous

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"

	"github.com/snowflake-go/snowflake/internal/fingerprint"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// chromium156JA4 is the JA4 of Debian's chromium 156.0.8078.108 towards a
// local HTTPS server by host name (measured with internal/fingerprint; the
// issue reports the same value). TestChromiumRendezvousJA4 compares with
// the live browser; this constant lets the unit test run without it.
const chromium156JA4 = "t13d1517h2_8daaf6152771_cb7bf5808d99"

// helloServer is an HTTPS server on 127.0.0.1 (HTTP/2 enabled) for the
// name broker.test that remembers, per client port, the ClientHello and
// the HTTP version of each connection.
type helloServer struct {
	ln   net.Listener
	srv  *http.Server
	pool *x509.CertPool
	wg   sync.WaitGroup

	mu     sync.Mutex // guards the following fields
	hellos map[int]*fingerprint.ClientHello
	protos map[int]string // client port -> its first request, "HTTP/2.0 GET /"
}

func startHelloServer(t *testing.T) *helloServer {
	t.Helper()
	cert := testenv.SelfSigned(t, "broker.test")
	s := &helloServer{pool: x509.NewCertPool(), hellos: map[int]*fingerprint.ClientHello{}, protos: map[int]string{}}
	s.pool.AddCert(cert.Leaf)
	var err error
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	s.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 1<<16))
			s.mu.Lock()
			if port := portOf(r.RemoteAddr); s.protos[port] == "" {
				// The first request tells who owns the connection
				// (Chromium fetches /favicon.ico after /).
				s.protos[port] = r.Proto + " " + r.Method + " " + r.URL.Path
			}
			s.mu.Unlock()
			io.WriteString(w, "<html><body>ok</body></html>")
		}),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"h2", "http/1.1"},
		},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.srv.Serve(tls.NewListener(&recordingListener{Listener: s.ln, s: s}, s.srv.TLSConfig))
	}()
	t.Cleanup(func() {
		s.srv.Close()
		s.wg.Wait()
	})
	return s
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func (s *helloServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// recordingListener decodes the ClientHello at the start of each accepted
// connection as it is read by crypto/tls.
type recordingListener struct {
	net.Listener
	s *helloServer
}

type recordingConn struct {
	net.Conn
	s    *helloServer
	r    fingerprint.StreamReassembler
	done bool
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, s: l.s}, nil
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.done && n > 0 {
		msgs, rerr := c.r.Add(p[:n])
		if rerr != nil {
			c.done = true
		}
		if len(msgs) > 0 {
			c.done = true
			if h, perr := fingerprint.ParseClientHello(msgs[0].Body, false); perr == nil {
				c.s.mu.Lock()
				c.s.hellos[portOf(c.RemoteAddr().String())] = h
				c.s.mu.Unlock()
			}
		}
	}
	return n, err
}

// exchange sends one rendezvous request through our default round tripper
// to the server, dialling broker.test as 127.0.0.1.
func exchange(t *testing.T, s *helloServer, imitate string) {
	t.Helper()
	addr := s.ln.Addr().String()
	rt, err := NewRoundTripper(TransportConfig{
		RootCAs:     s.pool,
		UTLSImitate: imitate,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHTTP(fmt.Sprintf("https://broker.test:%d/", s.port()), nil, rt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := h.Exchange(ctx, []byte(pollBody)); err != nil {
		t.Fatal(err)
	}
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// TestDefaultHelloIsChrome156: without utls-imitate (and with its explicit
// name) the broker sees Chromium 156's JA4 over HTTP/2, with GREASE first
// and last and the other extensions permuted per connection.
func TestDefaultHelloIsChrome156(t *testing.T) {
	s := startHelloServer(t)
	for range 4 {
		exchange(t, s, "")
	}
	exchange(t, s, "HelloChrome_156")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hellos) != 5 {
		t.Fatalf("server decoded %d hellos, want 5", len(s.hellos))
	}
	orders := map[string]bool{}
	for port, h := range s.hellos {
		if got := h.JA4(); got != chromium156JA4 {
			t.Errorf("JA4 %s, want %s\n%s", got, chromium156JA4, h.JA4R())
		}
		if got := s.protos[port]; got != "HTTP/2.0 POST /client" {
			t.Errorf("request %q, want HTTP/2.0 POST /client", got)
		}
		first, last := h.Extensions[0].Type, h.Extensions[len(h.Extensions)-1].Type
		if !fingerprint.IsGREASE(first) || !fingerprint.IsGREASE(last) || len(h.Extensions) != 19 {
			t.Errorf("extensions %v: want 17 between two GREASE", h.Extensions)
		}
		if !fingerprint.IsGREASE(h.SignatureAlgorithms[0]) || !fingerprint.IsGREASE(h.CipherSuites[0]) {
			t.Errorf("no GREASE in signature algorithms or ciphers: %s", h)
		}
		if h.KeyShares[1].Group != 0x11ec || h.KeyShares[1].KeyLen != 1216 || h.KeyShares[2].Group != 0x001d {
			t.Errorf("key shares %v, want GREASE, X25519MLKEM768 and x25519", h.KeyShares)
		}
		if len(h.SessionID) != 32 || h.ServerName != "broker.test" || !slices.Equal(h.ALPN, []string{"h2", "http/1.1"}) {
			t.Errorf("hello %s", h)
		}
		var order []uint16
		for _, e := range h.Extensions[1 : len(h.Extensions)-1] {
			order = append(order, e.Type)
		}
		orders[fmt.Sprint(order)] = true
	}
	// 17! orders: five connections in the same order would mean no
	// permutation (the chance of a repeat among five is below 1e-13).
	if len(orders) != 5 {
		t.Errorf("%d distinct extension orders in 5 connections", len(orders))
	}
}

// TestChromeTrustAnchorsMatchCapture compares the trust_anchors payload of
// our spec with the one in a captured Chromium 156 hello.
func TestChromeTrustAnchorsMatchCapture(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "internal/fingerprint/testdata/chromium156-tls-clienthello.hex"))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		t.Fatal(err)
	}
	var r fingerprint.StreamReassembler
	msgs, err := r.Add(stream)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	captured, err := fingerprint.ParseClientHello(msgs[0].Body, false)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ChromeSpec()
	if err != nil {
		t.Fatal(err)
	}
	var ours []byte
	for _, e := range spec.Extensions {
		if g, ok := e.(*utls.GenericExtension); ok && g.Id == 0xca34 {
			ours = g.Data
		}
	}
	for _, e := range captured.Extensions {
		if e.Type == 0xca34 && !bytes.Equal(e.Data, ours) {
			t.Fatalf("trust_anchors differ:\ncaptured %x\nours     %x", e.Data, ours)
		}
	}
	if ours == nil {
		t.Fatal("spec has no trust_anchors extension")
	}
}

// TestChromeSpecPermutationUniform checks that every middle extension
// reaches every position: a biased shuffle (swaps skipped next to fixed
// entries) would leave some positions rare.
func TestChromeSpecPermutationUniform(t *testing.T) {
	const rounds = 3000
	counts := map[string][]int{}
	for range rounds {
		spec, err := ChromeSpec()
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range spec.Extensions[1 : len(spec.Extensions)-1] {
			name := fmt.Sprintf("%T", e)
			if counts[name] == nil {
				counts[name] = make([]int, len(spec.Extensions)-2)
			}
			counts[name][i]++
		}
	}
	// Expected count per cell 3000/17 ≈ 176; the binomial standard
	// deviation is ≈ 13, so 100..260 is about ±6 sigma.
	for name, c := range counts {
		for pos, n := range c {
			if n < 100 || n > 260 {
				t.Errorf("%s at position %d: %d times of %d", name, pos, n, rounds)
			}
		}
	}
}

// TestChromiumRendezvousJA4 runs Debian's Chromium and our rendezvous
// client against the same local HTTPS server, captures both handshakes on
// the wire with dumpcap, and requires equal JA4 and equal HTTP versions.
func TestChromiumRendezvousJA4(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	tshark := testenv.LookPath(t, "tshark")
	dumpcap := testenv.LookPath(t, "dumpcap")
	s := startHelloServer(t)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	capture, err := fingerprint.StartCapture(ctx, fingerprint.CaptureConfig{
		Interface: "lo", Filter: fingerprint.PortFilter("tcp", s.port()), Tshark: tshark, Dumpcap: dumpcap})
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()

	url := fmt.Sprintf("https://broker.test:%d/", s.port())
	p, _ := testenv.StartChromium(t, "--disable-quic", "--ignore-certificate-errors",
		"--host-resolver-rules=MAP broker.test 127.0.0.1", "--dump-dom", url)
	select {
	case <-p.Exited():
	case <-ctx.Done():
		t.Fatalf("chromium did not finish loading %s; output:\n%s", url, p.Output())
	}
	exchange(t, s, "")
	packets, err := capture.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hellos, err := fingerprint.Extract(packets)
	if err != nil {
		t.Fatal(err)
	}

	s.mu.Lock()
	protos := maps(s.protos)
	s.mu.Unlock()
	var browser, ours []string
	// The server's answer depends on what the hello offered: the same
	// version, cipher, extensions and key-share group for both clients
	// means the server cannot tell them apart either.
	var browserServer, ourServer []string
	for _, h := range hellos {
		if h.Server != nil {
			answer := fmt.Sprintf("%s key_share=%s", h.Server.Summary(), fingerprint.GroupName(h.Server.KeyShareGroup))
			switch protos[int(h.Dst.Port())] {
			case "HTTP/2.0 GET /":
				browserServer = append(browserServer, answer)
			case "HTTP/2.0 POST /client":
				ourServer = append(ourServer, answer)
			}
		}
		if h.Client == nil {
			continue
		}
		t.Logf("%s (%s): %s\n  JA4 %s", h.Src, protos[int(h.Src.Port())], h.Client, h.Client.JA4())
		switch protos[int(h.Src.Port())] {
		case "HTTP/2.0 GET /":
			browser = append(browser, h.Client.JA4())
		case "HTTP/2.0 POST /client":
			ours = append(ours, h.Client.JA4())
		default:
			// Chromium may open a spare connection it never uses.
			if h.Client.JA4() != chromium156JA4 {
				browser = append(browser, h.Client.JA4())
			}
		}
	}
	if len(browser) == 0 || len(ours) != 1 {
		t.Fatalf("captured %d Chromium and %d rendezvous ClientHellos (requests seen: %v)", len(browser), len(ours), protos)
	}
	// Extensions and signature algorithms change between Chromium
	// versions (148 sends no trust_anchors and no ML-DSA schemes); the
	// cipher suites, JA4's middle part, have not.
	versioned := testenv.VersionedErrorf(t)
	ciphers := func(ja4 string) string { return strings.Split(ja4, "_")[1] }
	for _, ja4 := range browser {
		if ja4 != ours[0] {
			versioned("JA4 differs: Chromium %s, rendezvous client %s", ja4, ours[0])
		}
		if ciphers(ja4) != ciphers(ours[0]) {
			t.Errorf("JA4 cipher hash differs: Chromium %s, rendezvous client %s", ja4, ours[0])
		}
	}
	if len(browserServer) == 0 || len(ourServer) != 1 {
		t.Fatalf("captured %d ServerHellos to Chromium and %d to our client", len(browserServer), len(ourServer))
	}
	for _, a := range browserServer {
		if a != ourServer[0] {
			t.Errorf("server answered differently: to Chromium %s, to our client %s", a, ourServer[0])
		}
	}
	t.Logf("Chromium and rendezvous client JA4: %s; ServerHello to both: %s", ours[0], ourServer[0])
}

func maps(m map[int]string) map[int]string {
	c := make(map[int]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// BenchmarkHandshake measures one rendezvous TLS handshake plus request
// over loopback per iteration, for the default Chromium 156 hello and the
// older presets (the ML-KEM key share costs key generation on every
// connection).
func BenchmarkHandshake(b *testing.B) {
	for _, name := range []string{ChromeName, "hellochrome_auto", "hellorandomizedalpn"} {
		b.Run(name, func(b *testing.B) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			srv.EnableHTTP2 = true
			srv.StartTLS()
			defer srv.Close()
			addr := srv.Listener.Addr().String()
			for b.Loop() {
				rt, err := NewRoundTripper(TransportConfig{RootCAs: poolOf(srv), UTLSImitate: name,
					Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
						var d net.Dialer
						return d.DialContext(ctx, network, addr)
					}})
				if err != nil {
					b.Fatal(err)
				}
				h, _ := NewHTTP("https://example.com/", nil, rt)
				if _, err := h.Exchange(context.Background(), []byte(pollBody)); err != nil {
					b.Fatal(err)
				}
				rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
			}
		})
	}
}
