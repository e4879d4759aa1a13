package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	client "github.com/snowflake-go/snowflake/client/lib"
	"github.com/snowflake-go/snowflake/common/rendezvous"
	"github.com/snowflake-go/snowflake/internal/sqstest"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

const mb = 1 << 20

// TestDebianProxy moves 100 MB through our client, Debian's snowflake-proxy
// 2.5.1, our broker and our server. It is about wire compatibility, so the
// client is built without the race detector (a race-enabled client needs
// minutes for 100 MB); the other tests race-check it.
func TestDebianProxy(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	c := startChain(t, 100*mb)
	c.startDebianProxy("debian-proxy")
	c.waitProxies(1)
	cl, socks := c.startClient("client", testenv.BinaryNoRace(t, "./client"), c.clientArgs("client")...)
	conn := socksDial(t, socks, "")
	d := c.download(conn, nil)
	t.Logf("100 MB via Debian's proxy in %v (%.1f MB/s), client CPU %.2f s",
		d.Round(time.Millisecond), float64(c.src.size)/d.Seconds()/1e6, cpuSeconds(t, cl))
}

// TestProxyChurn kills the proxy serving a 100 MB download three times;
// the session moves to the other proxies and the bytes arrive intact.
func TestProxyChurn(t *testing.T) {
	c := startChain(t, 100*mb)
	proxies := map[string]*testenv.Process{}
	for i := range 6 {
		name := fmt.Sprintf("proxy%d", i)
		proxies[name] = c.startProxy(name)
	}
	c.waitProxies(6)
	_, socks := c.startClient("client", testenv.Binary(t, "./client"), c.clientArgs("client")...)
	conn := socksDial(t, socks, "")
	defer func() {
		if testing.Verbose() {
			b, _ := os.ReadFile(filepath.Join(c.dir, "client.log"))
			t.Logf("client log:\n%s", b)
		}
	}()

	var got atomic.Int64
	clientLog := filepath.Join(c.dir, "client.log")
	peersEnded := func() int {
		b, _ := os.ReadFile(clientLog)
		return strings.Count(string(b), "proxy connection ended")
	}
	kills := make(chan string, 3)
	// The killer stops waiting once the download is over or has failed,
	// and the test waits for it before it ends: it logs (t.Logf after the
	// end panics) and kills the chain's processes.
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	defer func() {
		halt()
		for range kills {
		}
	}()
	// pollUntil checks cond every period until it holds (true), or until
	// limit has passed or the killer is stopped (false).
	pollUntil := func(cond func() bool, period, limit time.Duration) bool {
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				return false
			}
			select {
			case <-stop:
				return false
			case <-time.After(period):
			}
		}
		return true
	}
	const forever = 24 * time.Hour // bounded by stop
	go func() {
		defer close(kills)
		for k := 1; k <= 3; k++ {
			// Kill at 20, 40 and 60 % of the download.
			if !pollUntil(func() bool { return got.Load() >= int64(k)*c.src.size/5 }, 20*time.Millisecond, forever) {
				return
			}
			for {
				name := servingProxy(proxies)
				if name == "" {
					t.Errorf("kill %d: no proxy is serving the client", k)
					return
				}
				ended := peersEnded()
				proxies[name].Kill()
				delete(proxies, name)
				at, killedAt := got.Load(), time.Now()
				// The client must notice: only then was it the
				// serving proxy (a proxy can also hold a client the
				// broker matched but that never finished connecting).
				if !pollUntil(func() bool { return peersEnded() != ended }, 20*time.Millisecond, 15*time.Second) {
					select {
					case <-stop:
						return
					default:
					}
					t.Logf("%s was not carrying the session; trying another", name)
					continue
				}
				kills <- name
				if !pollUntil(func() bool { return got.Load() != at }, 10*time.Millisecond, forever) {
					return
				}
				t.Logf("killed %s at %d MB; bytes flowed again after %v", name, at/mb, time.Since(killedAt).Round(time.Millisecond))
				break
			}
			// Wait for the session to move before looking again.
			if !pollUntil(func() bool { return servingProxy(proxies) != "" }, 50*time.Millisecond, forever) {
				return
			}
		}
	}()
	d := c.download(conn, func(n int64) { got.Store(n) })
	halt()
	var killed []string
	for name := range kills {
		killed = append(killed, name)
	}
	if len(killed) != 3 {
		t.Fatalf("killed %v, want three proxies", killed)
	}
	t.Logf("100 MB with proxies %v killed on the way: %v", killed, d.Round(time.Millisecond))
}

// servingProxy returns the proxy with a client connected now ("client
// connected" not yet followed by "client disconnected").
func servingProxy(proxies map[string]*testenv.Process) string {
	for name, p := range proxies {
		out := p.Output()
		if strings.Count(out, "client connected") > strings.Count(out, "client disconnected") {
			return name
		}
	}
	return ""
}

// newTestCA makes a CA and a certificate for names, signed by it.
func newTestCA(t *testing.T, dir string, names ...string) (pool *x509.CertPool, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "snowflake test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "front.crt"), filepath.Join(dir, "front.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}

// toLoopback resolves every name to addr, as DNS would resolve a front to
// the CDN's edge, and records the names asked for.
func toLoopback(addr string, asked *[]string) rendezvous.DialFunc {
	var d net.Dialer
	return func(ctx context.Context, network, a string) (net.Conn, error) {
		*asked = append(*asked, a)
		return d.DialContext(ctx, network, addr)
	}
}

// libDownload runs client/lib in this process with cfg and downloads the
// chain's stream through it.
func libDownload(t *testing.T, c *chain, cfg client.Config) {
	t.Helper()
	cfg.ICEServers = []string{c.stun.URL()}
	cfg.KeepLocalAddresses = true
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr, err := client.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.download(conn, nil)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestDomainFronting puts Debian's nginx, with a certificate for the front
// name, in front of the broker. nginx routes by Host and logs SNI and Host;
// the client must have sent SNI = front and Host = broker.
func TestDomainFronting(t *testing.T) {
	nginx := testenv.LookPath(t, "nginx")
	c := startChain(t, 1*mb)
	c.startProxy("proxy")
	dir := t.TempDir()
	pool, certFile, keyFile := newTestCA(t, dir, "front.example")
	port := testenv.FreePort(t)
	brokerHost := "broker.example"
	bu, _ := url.Parse(c.brokerURL)
	conf := fmt.Sprintf(`
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	log_format fronting 'sni=$ssl_server_name host=$host uri=$request_uri status=$status proto=$server_protocol';
	server {
		listen 127.0.0.1:%[2]d ssl http2;
		server_name %[3]s;
		ssl_certificate %[4]s;
		ssl_certificate_key %[5]s;
		access_log %[1]s/access.log fronting;
		location / { proxy_pass http://%[6]s; proxy_http_version 1.1; proxy_read_timeout 30s; }
	}
	server {
		listen 127.0.0.1:%[2]d ssl http2 default_server;
		server_name _;
		ssl_certificate %[4]s;
		ssl_certificate_key %[5]s;
		access_log %[1]s/access.log fronting;
		return 421;
	}
}
`, dir, port, brokerHost, certFile, keyFile, bu.Host)
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, "nginx", nil, nginx, "-c", confFile, "-e", filepath.Join(dir, "error.log"), "-p", dir)
	waitListening(t, p, fmt.Sprintf("127.0.0.1:%d", port))

	// crypto/tls and two uTLS fingerprints; nginx offers HTTP/2, which the
	// browser-like hellos negotiate.
	for _, tc := range []struct{ imitate, proto string }{
		{"", "HTTP/2.0"}, {"hellorandomizedalpn", "HTTP/2.0"}, {"hellofirefox_auto", "HTTP/2.0"},
	} {
		t.Run("utls="+tc.imitate, func(t *testing.T) {
			os.Truncate(filepath.Join(dir, "access.log"), 0)
			c.waitProxies(1)
			var asked []string
			libDownload(t, c, client.Config{
				BrokerURL:    "https://" + brokerHost + "/",
				FrontDomains: []string{"front.example"},
				UTLSImitate:  tc.imitate,
				RootCAs:      pool,
				DialBroker:   toLoopback(fmt.Sprintf("127.0.0.1:%d", port), &asked),
			})
			log, _ := os.ReadFile(filepath.Join(dir, "access.log"))
			want := "sni=front.example host=broker.example uri=/client status=200 proto=" + tc.proto
			if !strings.Contains(string(log), want) {
				t.Fatalf("nginx did not log %q; access log:\n%s", want, log)
			}
			for _, a := range asked {
				if a != "front.example:443" {
					t.Errorf("client resolved %q; only the front may be looked up", a)
				}
			}
		})
	}
}

func waitListening(t *testing.T, p *testenv.Process, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		select {
		case <-p.Exited():
			t.Fatalf("%s exited:\n%s", p.Name, p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s is not listening on %s", p.Name, addr)
}

// TestAMPCache runs a full rendezvous through a local AMP-cache stand-in
// that, like the real cache, forwards a GET for
// https://<encoded host>.<cache>/c/s/<host>/<path> to https://<host>/<path>.
func TestAMPCache(t *testing.T) {
	c := startChain(t, 1*mb)
	c.startProxy("proxy")
	c.waitProxies(1)
	bu, _ := url.Parse(c.brokerURL)
	const brokerHost = "broker.example"
	var forwarded atomic.Int32
	cache := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rest, ok := strings.CutPrefix(r.URL.Path, "/c/")
			if !ok || r.Method != http.MethodGet || r.Host != "broker-example.cache.example" {
				http.Error(w, "not a cache URL", http.StatusNotFound)
				return
			}
			rest = strings.TrimPrefix(rest, "s/")
			host, path, _ := strings.Cut(rest, "/")
			if host != brokerHost {
				http.Error(w, "unknown publisher", http.StatusNotFound)
				return
			}
			resp, err := http.Get("http://" + bu.Host + "/" + path)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			forwarded.Add(1)
			w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go cache.Serve(ln)
	defer cache.Close()

	var asked []string
	libDownload(t, c, client.Config{
		BrokerURL:   "http://" + brokerHost + "/",
		AMPCacheURL: "http://cache.example/",
		Max:         2, // a spare proxy waits in the queue
		DialBroker:  toLoopback(ln.Addr().String(), &asked),
	})
	if forwarded.Load() == 0 {
		t.Fatal("no request went through the cache")
	}
}

// TestSQS runs the rendezvous over a local SQS server with the client binary.
func TestSQS(t *testing.T) {
	endpoint := sqstest.Start(t)
	creds := rendezvous.SQSCredentials{AccessKeyID: "AKIDTEST", SecretKey: "secret"}
	t.Setenv("AWS_ENDPOINT_URL_SQS", endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretKey)
	c := startChain(t, 1*mb, "-broker-sqs-name", "snowflake-broker", "-broker-sqs-region", sqstest.Region)
	c.startProxy("proxy")
	c.waitProxies(1)
	queue := endpoint + "/" + sqstest.AccountID + "/snowflake-broker"
	_, socks := c.startClient("client", testenv.Binary(t, "./client"),
		"-ice", c.stun.URL(), "-keep-local-addresses", "-log", filepath.Join(c.dir, "client.log"))
	start := time.Now()
	conn := socksDial(t, socks, "sqsqueue="+queue+";sqscreds="+creds.Encode())
	c.download(conn, nil)
	t.Logf("SQS rendezvous and 1 MB in %v", time.Since(start).Round(time.Millisecond))
	if testing.Verbose() {
		b, _ := os.ReadFile(filepath.Join(c.dir, "client.log"))
		t.Logf("client log:\n%s", b)
	}
}
