package broker

import (
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/snowflake-go/snowflake/common/geoip"
	"github.com/snowflake-go/snowflake/common/nat"
)

func TestRoundUp8(t *testing.T) {
	for in, want := range map[uint64]uint64{0: 0, 1: 8, 7: 8, 8: 8, 9: 16, 16: 16, 17: 24} {
		if got := roundUp8(in); got != want {
			t.Errorf("roundUp8(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestMetricsLog(t *testing.T) {
	tab, err := geoip.Parse(strings.NewReader("3405803776,3405804031,AU\n3325256704,3325256959,US\n"), nil) // 203.0.113.0/24, 198.51.100.0/24
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	m := newMetrics(newPools(), start)
	m.geo.Store(tab)
	au := netip.MustParseAddr("203.0.113.1")
	us := netip.MustParseAddr("198.51.100.1")
	// Three polls from one AU address (two types), one from a US address,
	// and one refused for its relay pattern, which counts only as a poll.
	m.proxyPolled(au, "standalone", nat.Restricted, true, false)
	m.proxyPolled(au, "standalone", nat.Restricted, true, false)
	m.proxyPolled(au, "webext", nat.Unrestricted, false, false)
	m.proxyPolled(us, "badge", nat.Unknown, true, false)
	m.proxyPolled(netip.MustParseAddr("198.51.100.2"), "iptproxy", nat.Unknown, true, true)
	m.proxyPollEnded("standalone", nat.Restricted, false)
	m.clientPolled(au, MethodHTTP, nat.Unrestricted, clientDenied)
	m.clientPolled(us, MethodAMPCache, nat.Restricted, clientDenied)
	m.clientPolled(netip.Addr{}, MethodSQS, nat.Unknown, clientMatched)
	m.clientPolled(au, MethodHTTP, nat.Unknown, clientTimeout)

	var out strings.Builder
	if err := m.rotate(&out, start.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	want := `snowflake-stats-end 2026-11-28 12:00:00 (86400 s)
snowflake-ips AU=8,US=8
snowflake-ips-standalone 8
snowflake-ips-webext 8
snowflake-ips-badge 8
snowflake-ips-iptproxy 0
snowflake-ips-total 8
snowflake-idle-count 8
snowflake-proxy-poll-with-relay-url-count 8
snowflake-proxy-poll-without-relay-url-count 8
snowflake-proxy-rejected-for-relay-url-count 8
client-denied-count 8
client-restricted-denied-count 8
client-unrestricted-denied-count 8
client-snowflake-match-count 8
client-snowflake-timeout-count 8
client-http-count 8
client-http-ips AU=8
client-ampcache-count 8
client-ampcache-ips US=8
client-sqs-count 8
client-sqs-ips 
snowflake-ips-nat-restricted 8
snowflake-ips-nat-unrestricted 8
snowflake-ips-nat-unknown 8
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	// The next interval starts empty, with a new hashing key.
	out.Reset()
	m.rotate(&out, start.Add(48*time.Hour))
	if !strings.Contains(out.String(), "snowflake-ips \n") || !strings.Contains(out.String(), "snowflake-ips-total 0\n") {
		t.Fatalf("second interval not empty:\n%s", out.String())
	}
}

func TestFormatCountriesOrder(t *testing.T) {
	got := formatCountries(map[string]uint64{"DE": 3, "AU": 20, "BR": 9, "CA": 12})
	if want := "AU=24,BR=16,CA=16,DE=8"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.log")
	b, srv := newTestBroker(t, func(c *Config) { c.MetricsLogPath = path })
	if r := do(t, http.MethodGet, srv.URL+"/metrics", nil, nil); r.status != 200 || r.body != "" {
		t.Fatalf("before first interval: %d %q", r.status, r.body)
	}
	post(t, srv.URL+"/client", clientPollBody(t, nat.Unknown))
	if err := b.rotateMetrics(time.Now()); err != nil {
		t.Fatal(err)
	}
	r := do(t, http.MethodGet, srv.URL+"/metrics", nil, nil)
	if r.status != 200 || !strings.HasPrefix(r.body, "snowflake-stats-end ") || !strings.Contains(r.body, "client-denied-count 8\n") {
		t.Fatalf("/metrics = %d\n%s", r.status, r.body)
	}
	if r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatal("/metrics lacks CORS header")
	}
	data, _ := os.ReadFile(path)
	if string(data) != r.body {
		t.Fatal("/metrics differs from the file")
	}
}

// TestRelayURLCounts checks the relay-pattern counts against upstream's
// broker spec: with- and without-relay-url count every poll that carried
// the extension or not, and rejected-for-relay-url counts the rejected
// ones among them.
func TestRelayURLCounts(t *testing.T) {
	m := newMetrics(newPools(), time.Now())
	a := netip.MustParseAddr("203.0.113.1")
	m.proxyPolled(a, "standalone", nat.Restricted, true, false)
	m.proxyPolled(a, "standalone", nat.Restricted, true, true)
	m.proxyPolled(a, "standalone", nat.Restricted, false, true)
	m.mu.Lock()
	c := *m.interval
	m.mu.Unlock()
	if c.pollWithRelayURL != 2 || c.pollWithoutRelayURL != 1 || c.rejectedRelayURL != 2 {
		t.Errorf("log counts: with %d, without %d, rejected %d; want 2, 1, 2",
			c.pollWithRelayURL, c.pollWithoutRelayURL, c.rejectedRelayURL)
	}
	if w, wo, r := rawCount(m.pollWithRelayURL), rawCount(m.pollWithoutRelayURL), rawCount(m.pollRejectedRelayURL); w != 2 || wo != 1 || r != 2 {
		t.Errorf("Prometheus counts: with %d, without %d, rejected %d; want 2, 1, 2", w, wo, r)
	}
}

// TestRejectedProxyNotCounted checks that a proxy refused for its relay
// pattern is not counted among the proxies (snowflake-ips and
// proxy_total), as in upstream brokers: it is never given a client.
func TestRejectedProxyNotCounted(t *testing.T) {
	m := newMetrics(newPools(), time.Now())
	m.proxyPolled(netip.MustParseAddr("203.0.113.1"), "standalone", nat.Restricted, true, true)
	m.mu.Lock()
	n := len(m.interval.proxies)
	m.mu.Unlock()
	if n != 0 {
		t.Errorf("%d proxy addresses counted, want 0", n)
	}
	ch := make(chan prometheus.Metric, 16)
	m.proxyTotal.Collect(ch)
	if n := len(ch); n != 0 {
		t.Errorf("proxy_total has %d series, want 0", n)
	}
}

// rawCount returns the unrounded count of v summed over the series whose
// labels start with the given values (all series if none are given).
func rawCount(v *roundedCounterVec, labels ...string) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	var n uint64
	for _, x := range v.values {
		if slices.Equal(x.labels[:min(len(labels), len(x.labels))], labels) {
			n += x.n
		}
	}
	return n
}
