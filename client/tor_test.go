package main

import (
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
	conf := strings.Join([]string{
		"DataDirectory " + filepath.Join(dir, "data"),
		"SocksPort 0",
		"UseBridges 1",
		"ShutdownWaitLength 0",
		"Log notice stdout",
		"ClientTransportPlugin snowflake exec " + bin + " -log " + clientLog,
		"Bridge " + bridge,
	}, "\n") + "\n"
	torrc := filepath.Join(dir, "torrc")
	if err := os.WriteFile(torrc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, "tor", nil, tor, "-f", torrc, "--ignore-missing-torrc")
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
