package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestTor: Debian's tor runs our client from a Tor Browser-style bridge
// line, reports the transport launched, and the client takes the bridge
// line's arguments (fronted HTTPS rendezvous with uTLS) for tor's SOCKS
// request. The broker name does not resolve in the test's namespace, so
// the rendezvous fails there, which the client reports to tor.
func TestTor(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	tor := testenv.LookPath(t, "tor")
	bin := testenv.Binary(t, "./client")
	dir := t.TempDir()
	clientLog := filepath.Join(dir, "client.log")
	bridge := "snowflake 192.0.2.3:80 2B280B23E1107BB62ABFC40DDCC8824814F80A72" +
		" fingerprint=2B280B23E1107BB62ABFC40DDCC8824814F80A72" +
		" url=https://snowflake-broker.invalid/ fronts=front1.invalid,front2.invalid" +
		" ice=stun:127.0.0.1:3478,stun:127.0.0.2:3478 utls-imitate=hellorandomizedalpn"
	p := startTor(t, tor, dir, bin, clientLog, bridge)
	p.WaitFor(t, "snowflake-client started", 90*time.Second)
	p.WaitFor(t, "Connected to pluggable transport", 90*time.Second)
	// The client logs to tor (PT LOG lines) that it could not reach the
	// fronted broker; tor shows them in its own log.
	p.WaitFor(t, "proxy attempt failed", 90*time.Second)
	b, _ := os.ReadFile(clientLog)
	log := string(b)
	for _, want := range []string{"snowflake-client started", "proxy attempt failed"} {
		if !strings.Contains(log, want) {
			t.Errorf("client log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "127.0.0.") {
		t.Errorf("client log contains an IP address without -unsafe-logging:\n%s", log)
	}
}

// TestTorUpstreamProxy: tor configured with Socks5Proxy (and credentials)
// hands the proxy to our client as TOR_PT_PROXY; the client checks it,
// answers PROXY DONE, and sends its rendezvous through it.
func TestTorUpstreamProxy(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	tor := testenv.LookPath(t, "tor")
	bin := testenv.Binary(t, "./client")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.ServeSOCKS5(t, ln, &testenv.SOCKS5Server{Username: "toruser", Password: "torpass"})
	dir := t.TempDir()
	clientLog := filepath.Join(dir, "client.log")
	// The front resolves (at the proxy) to loopback, where nothing
	// listens on 443: the rendezvous is attempted through the proxy and
	// fails there.
	bridge := "snowflake 192.0.2.3:80 2B280B23E1107BB62ABFC40DDCC8824814F80A72" +
		" fingerprint=2B280B23E1107BB62ABFC40DDCC8824814F80A72" +
		" url=https://snowflake-broker.invalid/ fronts=localhost" +
		" ice=stun:127.0.0.1:3478 utls-imitate=hellorandomizedalpn"
	p := startTor(t, tor, dir, bin, clientLog, bridge,
		"Socks5Proxy "+srv.Addr(), "Socks5ProxyUsername toruser", "Socks5ProxyPassword torpass")
	p.WaitFor(t, "using the upstream SOCKS5 proxy", 90*time.Second)
	p.WaitFor(t, "proxy attempt failed", 90*time.Second)
	if out := p.Output(); strings.Contains(out, "PROXY-ERROR") || strings.Contains(out, "proxy error") {
		t.Errorf("tor reports a proxy error:\n%s", out)
	}
	// The start-up check (UDP ASSOCIATE) and the fronted rendezvous
	// (CONNECT to localhost:443) both reached the proxy, with tor's
	// credentials.
	if srv.Associations.Load() == 0 {
		t.Error("the client did not check the proxy's UDP ASSOCIATE")
	}
	if srv.Requests.Load() < 2 {
		t.Errorf("proxy saw %d requests, want the check and a rendezvous", srv.Requests.Load())
	}
	if srv.AuthFailures.Load() != 0 {
		t.Error("tor's proxy credentials did not reach the client intact")
	}
}

// startTor runs tor as a bridge client whose snowflake transport is bin
// (logging to clientLog), with extra torrc lines.
func startTor(t *testing.T, tor, dir, bin, clientLog, bridge string, extra ...string) *testenv.Process {
	t.Helper()
	lines := append([]string{
		"DataDirectory " + filepath.Join(dir, "data"),
		"SocksPort 0",
		"UseBridges 1",
		"ShutdownWaitLength 0",
		"Log notice stdout",
	}, extra...)
	lines = append(lines,
		"ClientTransportPlugin snowflake exec "+bin+" -log "+clientLog,
		"Bridge "+bridge)
	torrc := filepath.Join(dir, "torrc")
	if err := os.WriteFile(torrc, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return testenv.Start(t, "tor", nil, tor, "-f", torrc, "--ignore-missing-torrc")
}
