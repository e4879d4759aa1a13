package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/internal/stunserver"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestProbeWithOurProxy runs the probetest binary and our proxy binary on
// loopback. There is no NAT between them, so the probe's data channel opens
// and the proxy must report itself unrestricted.
func TestProbeWithOurProxy(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	stun, err := stunserver.Listen("127.0.0.1", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer stun.Close()
	port := testenv.FreePort(t)
	probe := testenv.Start(t, "probetest", nil, testenv.Binary(t, "./probetest"),
		"-addr", fmt.Sprintf("127.0.0.1:%d", port), "-disable-tls", "-keep-local-addresses",
		"-stun", stun.URL(), "-unsafe-logging")
	probe.WaitFor(t, "listening", 60*time.Second)

	// A broker that never has clients.
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := (&messages.ProxyPollResponse{Status: messages.StatusNoMatch}).Encode()
		w.Write(b)
	}))
	defer broker.Close()
	proxy := testenv.Start(t, "proxy", nil, testenv.Binary(t, "./proxy"),
		"-broker", broker.URL+"/", "-stun", stun.URL(), "-keep-local-addresses",
		"-relay", "ws://127.0.0.1:1/", "-allow-non-tls-relay", "-allowed-relay-hostname-pattern", "127.0.0.1$",
		"-nat-probe-server", fmt.Sprintf("http://127.0.0.1:%d/probe", port),
		"-summary-interval", "0s", "-geoipdb", "", "-geoip6db", "", "-unsafe-logging")
	line := proxy.WaitFor(t, "NAT type", 60*time.Second)
	if want := "nat=unrestricted"; !strings.Contains(line, want) {
		t.Fatalf("proxy reported %q, want %s", line, want)
	}
}

// TestTLSErrorsStayInTheLog checks that the HTTP server's own error messages
// (here a TLS handshake error, which names the remote address) go through
// the scrubbing logger instead of the standard library's default logger on
// stderr.
func TestTLSErrorsStayInTheLog(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	certFile, keyFile := testenv.WriteCert(t, t.TempDir(), "127.0.0.1")
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	probe := testenv.Start(t, "probetest", nil, testenv.Binary(t, "./probetest"),
		"-addr", addr, "-cert", certFile, "-key", keyFile)
	probe.WaitFor(t, "listening", 60*time.Second)

	// Plain HTTP to the TLS port: the server answers 400 and then logs
	// "http: TLS handshake error from 127.0.0.1:...".
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(conn)
	if !strings.Contains(string(reply), "400 Bad Request") {
		t.Fatalf("reply %q: the server did not take the request as plain HTTP", reply)
	}
	time.Sleep(500 * time.Millisecond) // the error is logged after the reply
	if out := probe.Output(); strings.Contains(out, "127.0.0.1") {
		t.Fatalf("an address reached the output:\n%s", out)
	}
}

// TestACMEServesHTTP01 starts the service with -acme-hostnames on its
// default-style port (not 443), where Let's Encrypt cannot reach the
// TLS-ALPN-01 responder. Certificates can then only be issued through the
// HTTP-01 challenge, so port 80 must answer challenge requests.
func TestACMEServesHTTP01(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	port := testenv.FreePort(t)
	probe := testenv.Start(t, "probetest", nil, testenv.Binary(t, "./probetest"),
		"-addr", fmt.Sprintf("127.0.0.1:%d", port), "-acme-hostnames", "probe.example",
		"-acme-cert-cache", t.TempDir())
	probe.WaitFor(t, "listening", 60*time.Second)

	c := &http.Client{Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:80/.well-known/acme-challenge/unknown-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "probe.example" // what Let's Encrypt asks for
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("no HTTP-01 challenge responder on port 80: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown challenge token: status %d, want 404", resp.StatusCode)
	}
}
