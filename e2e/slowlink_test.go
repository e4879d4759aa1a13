package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/bench/chain"
	"github.com/snowflake-go/snowflake/internal/stunserver"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// Addresses of the slow-link testbed, inside namespaces of its own.
const (
	slowRouterToClient = "10.8.1.1"
	slowClientAddr     = "10.8.1.2" // the client on a slow link
	slowRouterToProxy  = "10.8.5.1"
	slowProxyAddr      = "10.8.5.2"
	slowServicesAddr   = "10.8.2.1" // broker, bridge, STUN, sink (router namespace)
	slowSTUN2          = "10.8.2.2"
)

// slowLinkRate is what reaches the client, in bytes a second: a poor
// mobile link.
const slowLinkRate = 20_000

// TestSlowLink downloads through a client whose link delivers 20 KB/s
// (a token bucket on the router's side of its link, with half a second of
// queue). Everything else is fast, so the proxy holds what waits for the
// client in its data channel and stops reading the bridge while that
// drains from its high-water mark to half of it, about 13 s at this rate.
// The proxy runs with a 5 s idle timeout: a slow client is not an idle
// one, and must keep its proxy. The download must arrive intact.
func TestSlowLink(t *testing.T) {
	t.Parallel()
	bin := buildAll(t)
	if testenv.IsolateNetwork(t) {
		return
	}
	tb := newTestbed(t)
	tc := testenv.LookPath(t, "tc")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	tb.route(slowServicesAddr, slowSTUN2)
	tb.addNamespace("slow", slowRouterToClient, slowClientAddr)
	tb.addNamespace("volunteer", slowRouterToProxy, slowProxyAddr)
	tb.run(tc, "qdisc", "add", "dev", "vslow0", "root", "tbf", "rate", fmt.Sprintf("%dbit", 8*slowLinkRate),
		"burst", "4kb", "latency", "500ms")

	stun, err := stunserver.Listen(slowServicesAddr, slowSTUN2)
	if err != nil {
		t.Fatal(err)
	}
	defer stun.Close()
	sink, err := chain.StartSinkOn(slowServicesAddr + ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	relayURL := fmt.Sprintf("ws://%s:8080/", slowServicesAddr)
	metricsAddr := slowServicesAddr + ":9090"
	server := tb.start("", "server", nil, bin.server, "-listen", slowServicesAddr+":8080",
		"-orport", sink.Addr(), "-disable-tls", "-metrics-addr", metricsAddr)
	if _, err := server.WaitFor(ctx, "listening"); err != nil {
		t.Fatal(err)
	}
	brokerURL := tb.startBroker(ctx, bin, slowServicesAddr, relayURL, slowServicesAddr)
	proxy := tb.start("volunteer", "proxy", nil, bin.proxy, "-broker", brokerURL, "-relay", relayURL,
		"-stun", stun.URL(), "-keep-local-addresses", "-allow-non-tls-relay",
		"-allowed-relay-hostname-pattern", slowServicesAddr+"$", "-allow-proxying-to-private-addresses",
		"-nat-probe-server", "", "-summary-interval", "0s", "-poll-interval", "2s", "-idle-timeout", "5s")
	waitAvailable(t, ctx, brokerURL, 1)

	client := tb.start("slow", "client", tb.clientEnv("client"), bin.client,
		"-url", brokerURL, "-ice", stun.URL(), "-keep-local-addresses", "-log", "/dev/stderr")
	el := download(t, ctx, tb.socks(ctx, "slow", client), 41, 1<<20)
	if rate := float64(1<<20) / el.Seconds(); rate > 1.5*slowLinkRate {
		t.Errorf("%.0f B/s through a %d B/s link: the shaping did not work", rate, slowLinkRate)
	}
	// For the record: KCP at the bridge resends what waits behind the slow
	// link longer than its timeout.
	if m, err := chain.ScrapeMetrics(ctx, "http://"+metricsAddr+"/metrics"); err == nil {
		sent, resent := m[`snowflake_server_kcp_segments_total{kind="sent"}`], m[`snowflake_server_kcp_segments_total{kind="retransmitted"}`]
		t.Logf("the bridge sent %.0f KCP segments, %.0f of them retransmissions", sent, resent)
	}
	// The client's log says "connected to a proxy" once per proxy (its
	// managed-transport copy of each line says it with a LOG prefix).
	clientLog, err := os.ReadFile(client.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(clientLog), "msg=\"connected to a proxy\""); n != 1 {
		t.Errorf("the client connected to a proxy %d times, want once\nproxy: %s\nclient: %s", n,
			grepLog(t, proxy, "client disconnected"), grepLog(t, client, "transport ended"))
	}
}

// grepLog returns the lines of p's log that contain substr.
func grepLog(t *testing.T, p *chain.Proc, substr string) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	var found []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) {
			found = append(found, l)
		}
	}
	return strings.Join(found, "\n")
}
