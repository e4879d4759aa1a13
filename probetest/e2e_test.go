package main

import (
	"fmt"
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
