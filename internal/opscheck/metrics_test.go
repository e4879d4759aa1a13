package opscheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/stunserver"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestMetrics runs a server, a broker and a proxy on loopback, makes the
// broker count every kind of event the dashboard plots, and then checks
// every binary's real metrics with promtool, and the example Prometheus
// configuration, alert rules and Grafana dashboard against those metrics.
// It also checks the proxy's status page, served on the metrics address.
func TestMetrics(t *testing.T) {
	// Build before isolating, so that the child process reuses the
	// binaries the other tests of this package already built.
	if !testenv.InIsolatedNetwork() {
		for _, pkg := range []string{"./server", "./broker", "./proxy"} {
			if r, _ := roleByName("snowflake-" + pkg[2:]); r.present(t) {
				testenv.Binary(t, pkg)
			}
		}
	}
	// Our binaries are given only loopback addresses, but a namespace makes
	// sure a forgotten default (public STUN, broker, NAT probe) cannot leak.
	if testenv.IsolateNetwork(t) {
		return
	}
	promtool := testenv.LookPath(t, "promtool")
	for _, r := range []string{"snowflake-server", "snowflake-broker", "snowflake-proxy"} {
		if rr, _ := roleByName(r); !rr.present(t) {
			t.Skipf("%s is not in the tree yet", r)
		}
	}
	dir := t.TempDir()
	serverPort, serverMetrics := testenv.FreePort(t), testenv.FreePort(t)
	brokerPort, proxyMetrics := testenv.FreePort(t), testenv.FreePort(t)
	// The relay never carries a client here, so tor is not needed: the
	// ORPort is a closed port.
	srv := testenv.Start(t, "snowflake-server", nil, testenv.Binary(t, "./server"),
		"-listen", fmt.Sprintf("127.0.0.1:%d", serverPort), "-orport", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"-disable-tls", "-metrics-addr", fmt.Sprintf("127.0.0.1:%d", serverMetrics))
	srv.WaitFor(t, "listening", time.Minute)
	// Before any proxy or client: the state idle alerts describe. The
	// server says "listening" before its metrics listener is up.
	srv.WaitFor(t, "metrics listening", time.Minute)
	idle := map[string]string{
		"snowflake-server": get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", serverMetrics)),
	}

	bridges := filepath.Join(dir, "bridges.json")
	line := fmt.Sprintf(`{"displayName":"loopback","webSocketAddress":"ws://127.0.0.1:%d/","fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}`+"\n", serverPort)
	if err := os.WriteFile(bridges, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	brk := testenv.Start(t, "snowflake-broker", nil, testenv.Binary(t, "./broker"),
		"-addr", fmt.Sprintf("127.0.0.1:%d", brokerPort), "-disable-tls", "-disable-geoip",
		"-bridge-list-path", bridges, "-allowed-relay-pattern", "127.0.0.1$", "-default-relay-pattern", "127.0.0.1$")
	brk.WaitFor(t, "listening", time.Minute)
	idle["snowflake-broker"] = get(t, fmt.Sprintf("http://127.0.0.1:%d/prometheus", brokerPort))

	stun, err := stunserver.Listen("127.0.0.1", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stun.Close() })
	prx := testenv.Start(t, "snowflake-proxy", nil, testenv.Binary(t, "./proxy"),
		"-broker", fmt.Sprintf("http://127.0.0.1:%d/", brokerPort),
		"-relay", fmt.Sprintf("ws://127.0.0.1:%d/", serverPort),
		"-allowed-relay-hostname-pattern", "127.0.0.1$", "-allow-non-tls-relay",
		"-allow-proxying-to-private-addresses", "-keep-local-addresses",
		"-stun", stun.URL(), "-nat-probe-server", "", "-summary-interval", "0s",
		"-geoipdb", "", "-geoip6db", "", "-poll-interval", "2s",
		"-metrics", "-metrics-address", "127.0.0.1", "-metrics-port", fmt.Sprint(proxyMetrics))
	prx.WaitFor(t, "metrics listening", time.Minute)

	broker := fmt.Sprintf("http://127.0.0.1:%d", brokerPort)
	// A restricted client finds no unrestricted proxy: a "denied" poll.
	post(t, broker+"/client", "1.0\n"+`{"offer":"{\"type\":\"offer\",\"sdp\":\"v=0\\r\\na=candidate:1 1 udp 1 192.0.2.7 9 typ host\\r\\n\"}","nat":"restricted"}`)
	// An answer for a poll that does not exist: "client gone".
	post(t, broker+"/answer", `{"Version":"1.3","Sid":"opscheck","Answer":"{\"type\":\"answer\",\"sdp\":\"a=candidate:1\"}"}`)
	// A proxy with a pattern narrower than the broker's is refused.
	post(t, broker+"/proxy", `{"Sid":"opscheck-narrow","Version":"1.3","Type":"standalone","NAT":"unknown","Clients":0,"AcceptedRelayPattern":"^other.example.net$"}`)
	// An old proxy without a pattern gets -default-relay-pattern; the broker
	// holds its poll, so send it in the background.
	oldProxy := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, broker+"/proxy",
			strings.NewReader(`{"Sid":"opscheck-old","Version":"1.2","Type":"standalone","NAT":"unknown","Clients":0}`))
		if err == nil {
			var resp *http.Response
			if resp, err = http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		oldProxy <- err
	}()
	defer func() {
		if err := <-oldProxy; err != nil {
			t.Errorf("poll without a relay pattern: %v", err)
		}
	}()

	endpoints := map[string]string{
		"snowflake-server": fmt.Sprintf("http://127.0.0.1:%d/metrics", serverMetrics),
		"snowflake-broker": broker + "/prometheus",
		"snowflake-proxy":  fmt.Sprintf("http://127.0.0.1:%d/internal/metrics", proxyMetrics),
	}
	needed := dashboardMetrics(t)
	for _, m := range alertMetrics(t) {
		needed[m] = true
	}
	// So must every metric doc/metrics.md describes.
	for _, m := range metricRef.FindAllString(repoFile(t, "doc/metrics.md"), -1) {
		needed[m] = true
	}
	// The broker counts a held proxy poll when its 10 s hold ends, so wait
	// until every metric the examples use has appeared (or time runs out).
	var bodies map[string]string
	var missing []string
	deadline := time.Now().Add(40 * time.Second)
	for {
		bodies = map[string]string{}
		names := map[string]bool{}
		for job, url := range endpoints {
			body := get(t, url)
			bodies[job] = body
			for n := range metricNames(body) {
				names[n] = true
			}
		}
		missing = missing[:0]
		for m := range needed {
			if !names[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("the dashboard, alert rules or doc/metrics.md use %s, which no binary exported", m)
	}

	for job, body := range bodies {
		t.Run("promtool/"+job, func(t *testing.T) {
			if !strings.Contains(body, "snowflake_") {
				t.Fatalf("no snowflake_ metrics:\n%s", body)
			}
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = strings.NewReader(body)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("promtool check metrics: %v\n%s", err, out)
			}
		})
	}

	t.Run("prometheus config", func(t *testing.T) {
		root := testenv.ModuleRoot(t)
		run(t, root, nil, promtool, "check", "config", "doc/examples/prometheus.yml")
		run(t, root, nil, promtool, "check", "rules", "doc/examples/snowflake-alerts.yml")
		// The scrape paths must be the ones the binaries serve.
		cfg := repoFile(t, "doc/examples/prometheus.yml")
		for _, path := range []string{"/prometheus", "/internal/metrics"} {
			if !strings.Contains(cfg, "metrics_path: "+path) {
				t.Errorf("prometheus.yml does not scrape %s", path)
			}
		}
	})

	// The alert rules must fire on the binaries' real metrics of the state
	// they describe, and name the target concerned.
	t.Run("alert rules", func(t *testing.T) {
		checkAlertScenario(t, promtool, alertScenario{
			name:   "no proxy waiting, no client",
			bodies: idle,
			firing: map[string]string{
				"SnowflakeBrokerNoProxies":  "snowflake-broker",
				"SnowflakeServerNoSessions": "snowflake-server",
			},
			silent: []string{"SnowflakeBrokerClientsDenied", "SnowflakeServerAtConnectionLimit", "SnowflakeTargetDown"},
		})
		if !strings.Contains(bodies["snowflake-broker"], "snowflake_available_proxies{") {
			t.Logf("no proxy was waiting at the last scrape; the scenario with one is not checked:\n%s", bodies["snowflake-broker"])
			return
		}
		checkAlertScenario(t, promtool, alertScenario{
			name:   "a proxy waiting",
			bodies: map[string]string{"snowflake-broker": bodies["snowflake-broker"]},
			silent: []string{"SnowflakeBrokerNoProxies"},
		})
	})

	t.Run("status page", func(t *testing.T) {
		base := fmt.Sprintf("http://127.0.0.1:%d", proxyMetrics)
		if page := get(t, base+"/"); !strings.Contains(page, "Snowflake proxy") {
			t.Errorf("status page:\n%s", page)
		}
		var st struct {
			NAT   string `json:"nat"`
			Polls int64  `json:"polls"`
		}
		if err := json.Unmarshal([]byte(get(t, base+"/status.json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.NAT != "unknown" || st.Polls == 0 {
			t.Errorf("status.json: %+v; want NAT unknown (no probe) and some polls", st)
		}
	})
}

func post(t *testing.T, url, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

func get(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// metricNames returns the metric names that have samples in a text
// exposition.
func metricNames(body string) map[string]bool {
	names := map[string]bool{}
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// metricRef matches our metric names: snowflake_* (broker, server) and
// tor_snowflake_proxy_* (proxy, upstream's names).
var metricRef = regexp.MustCompile(`\b(?:tor_)?snowflake_[a-z0-9_]+`)

// dashboardMetrics returns the metric names the Grafana dashboard's
// queries use; it fails on a dashboard that is not valid JSON or has no
// queries.
func dashboardMetrics(t *testing.T) map[string]bool {
	t.Helper()
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Type    string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(repoFile(t, "doc/examples/grafana-dashboard.json")), &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	names := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			refs := metricRef.FindAllString(tg.Expr, -1)
			if len(refs) == 0 {
				t.Errorf("dashboard panel %q: query %q uses no snowflake metric", p.Title, tg.Expr)
			}
			for _, r := range refs {
				names[r] = true
			}
		}
	}
	if len(names) < 10 {
		t.Errorf("dashboard uses only %d metrics", len(names))
	}
	return names
}

// alertMetrics returns the metric names used by the example alert rules.
func alertMetrics(t *testing.T) []string {
	t.Helper()
	return metricRef.FindAllString(repoFile(t, "doc/examples/snowflake-alerts.yml"), -1)
}
