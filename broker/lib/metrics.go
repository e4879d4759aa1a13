package broker

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/snowflake-go/snowflake/common/geoip"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
)

// Rendezvous methods, as they appear in metrics.
const (
	MethodHTTP     = "http"
	MethodAMPCache = "ampcache"
	MethodSQS      = "sqs"
)

var rendezvousMethods = [...]string{MethodHTTP, MethodAMPCache, MethodSQS}

// Status label values.
const (
	pollStatusMatched = "matched"
	pollStatusIdle    = "idle"
	clientMatched     = "matched"
	clientTimeout     = "timeout"
	clientDenied      = "denied"
	answerSuccess     = "success"
	answerClientGone  = "client_gone"
)

// roundUp8 rounds a count up to a multiple of 8, so that published numbers
// do not reveal single events.
func roundUp8(n uint64) uint64 { return (n + 7) / 8 * 8 }

// roundedCounterVec is a Prometheus counter family whose exported values are
// rounded up to multiples of 8.
type roundedCounterVec struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	// values is guarded by mu; keyed by the label values (a fixed-size
	// key, so that counting allocates nothing).
	values map[labelKey]*roundedValue
}

// maxLabels is the most labels of a roundedCounterVec (client polls have
// four).
const maxLabels = 4

type labelKey [maxLabels]string

type roundedValue struct {
	labels []string
	n      uint64
}

func newRoundedCounterVec(name, help string, labels ...string) *roundedCounterVec {
	return &roundedCounterVec{
		desc:   prometheus.NewDesc(prometheus.BuildFQName("snowflake", "", name), help, labels, nil),
		values: map[labelKey]*roundedValue{},
	}
}

func (c *roundedCounterVec) inc(labels ...string) {
	var key labelKey
	copy(key[:], labels)
	c.mu.Lock()
	v, ok := c.values[key]
	if !ok {
		v = &roundedValue{labels: slices.Clone(labels)}
		c.values[key] = v
	}
	v.n++
	c.mu.Unlock()
}

func (c *roundedCounterVec) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *roundedCounterVec) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.values {
		if m, err := prometheus.NewConstMetric(c.desc, prometheus.CounterValue, float64(roundUp8(v.n)), v.labels...); err == nil {
			ch <- m
		}
	}
}

// availableCollector exports the current pool sizes at scrape time, so the
// hot path does not update a gauge on every poll.
type availableCollector struct {
	desc    *prometheus.Desc // waiting proxies
	clients *prometheus.Desc // waiting clients
	pools   *pools
}

func (c *availableCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.clients
}

func (c *availableCollector) Collect(ch chan<- prometheus.Metric) {
	for k, n := range c.pools.snapshot() {
		if m, err := prometheus.NewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k.proxyType, string(k.natType)); err == nil {
			ch <- m
		}
	}
	if m, err := prometheus.NewConstMetric(c.clients, prometheus.GaugeValue, float64(c.pools.waitingClients())); err == nil {
		ch <- m
	}
}

// metrics holds the Prometheus families and the current interval's counts
// for the metrics log.
type metrics struct {
	registry *prometheus.Registry
	geo      atomic.Pointer[geoip.Table]

	proxyTotal           *prometheus.CounterVec
	proxyPoll            *roundedCounterVec
	proxyAnswer          *roundedCounterVec
	pollWithRelayURL     *roundedCounterVec
	pollWithoutRelayURL  *roundedCounterVec
	pollRejectedRelayURL *roundedCounterVec
	clientPoll           *roundedCounterVec

	mu sync.Mutex
	// interval is guarded by mu.
	interval *intervalCounts
}

// proxySeen records, for one distinct proxy address of the interval, its
// country and which types and NAT types it declared.
type proxySeen struct {
	cc    string
	types map[string]bool
	nats  map[nat.Type]bool
}

// intervalCounts are the counts of one metrics-log interval. Addresses are
// kept only as HMACs under a key that lives as long as the interval.
type intervalCounts struct {
	start time.Time
	key   [32]byte
	// proxies holds distinct proxy addresses (as keyed hashes).
	proxies map[[16]byte]*proxySeen

	idle, pollWithRelayURL, pollWithoutRelayURL, rejectedRelayURL   uint64
	denied, restrictedDenied, unrestrictedDenied, matched, timedOut uint64
	methodCount                                                     map[string]uint64
	methodCountries                                                 map[string]map[string]uint64
}

func newIntervalCounts(start time.Time) *intervalCounts {
	c := &intervalCounts{start: start, proxies: map[[16]byte]*proxySeen{},
		methodCount: map[string]uint64{}, methodCountries: map[string]map[string]uint64{}}
	rand.Read(c.key[:]) // crypto/rand.Read never fails (Go 1.24+).
	for _, m := range rendezvousMethods {
		c.methodCountries[m] = map[string]uint64{}
	}
	return c
}

// hash is a keyed hash of an address: SHA-256 over key‖address, a PRF
// for inputs of fixed length, computed without allocating.
func (c *intervalCounts) hash(a netip.Addr) [16]byte {
	var buf [32 + 16]byte
	copy(buf[:32], c.key[:])
	a16 := a.As16()
	copy(buf[32:], a16[:])
	sum := sha256.Sum256(buf[:])
	return [16]byte(sum[:16])
}

func newMetrics(p *pools, now time.Time) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		proxyTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "snowflake", Name: "proxy_total",
			Help: "The number of distinct proxy addresses seen per statistics interval",
		}, []string{"type", "nat", "cc"}),
		proxyPoll: newRoundedCounterVec("rounded_proxy_poll_total",
			"The number of proxy polls, rounded up to a multiple of 8", "nat", "type", "status"),
		proxyAnswer: newRoundedCounterVec("rounded_proxy_answer_total",
			"The number of proxy answers, rounded up to a multiple of 8", "type", "status"),
		pollWithRelayURL: newRoundedCounterVec("rounded_proxy_poll_with_relay_url_extension_total",
			"The number of proxy polls with a relay pattern, rounded up to a multiple of 8", "nat", "type"),
		pollWithoutRelayURL: newRoundedCounterVec("rounded_proxy_poll_without_relay_url_extension_total",
			"The number of proxy polls without a relay pattern, rounded up to a multiple of 8", "nat", "type"),
		pollRejectedRelayURL: newRoundedCounterVec("rounded_proxy_poll_rejected_relay_url_extension_total",
			"The number of proxy polls rejected for their relay pattern, rounded up to a multiple of 8", "nat", "type"),
		clientPoll: newRoundedCounterVec("rounded_client_poll_total",
			"The number of client polls, rounded up to a multiple of 8", "nat", "status", "cc", "rendezvous_method"),
		interval: newIntervalCounts(now),
	}
	m.registry.MustRegister(m.proxyTotal, m.proxyPoll, m.proxyAnswer, m.pollWithRelayURL,
		m.pollWithoutRelayURL, m.pollRejectedRelayURL, m.clientPoll,
		&availableCollector{
			desc: prometheus.NewDesc("snowflake_available_proxies",
				"The number of proxies currently waiting for a client", []string{"type", "nat"}, nil),
			clients: prometheus.NewDesc("snowflake_clients_waiting",
				"The number of client polls currently waiting for a proxy to poll", nil, nil),
			pools: p,
		})
	return m
}

// country returns the country code of a, or "??".
func (m *metrics) country(a netip.Addr) string {
	cc, _ := m.geo.Load().Lookup(a)
	return cc
}

// proxyPolled counts a proxy poll's address (once per interval) and its
// relay-pattern extension status. As in upstream's broker spec, every
// poll counts as with or without the extension, and a rejected one also
// as rejected.
func (m *metrics) proxyPolled(a netip.Addr, proxyType string, natType nat.Type, hadPattern, rejected bool) {
	nt := string(natType)
	if hadPattern {
		m.pollWithRelayURL.inc(nt, proxyType)
	} else {
		m.pollWithoutRelayURL.inc(nt, proxyType)
	}
	if rejected {
		m.pollRejectedRelayURL.inc(nt, proxyType)
	}
	cc := m.country(a)
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.interval
	if hadPattern {
		c.pollWithRelayURL++
	} else {
		c.pollWithoutRelayURL++
	}
	if rejected {
		c.rejectedRelayURL++
	}
	// A refused proxy is never given a client: like upstream, count
	// only admitted ones among the proxies.
	if rejected || !a.IsValid() {
		return
	}
	h := c.hash(a)
	seen, ok := c.proxies[h]
	if !ok {
		seen = &proxySeen{cc: cc, types: map[string]bool{}, nats: map[nat.Type]bool{}}
		c.proxies[h] = seen
		m.proxyTotal.WithLabelValues(proxyType, nt, cc).Inc()
	}
	seen.types[proxyType] = true
	seen.nats[natType] = true
}

// proxyPollEnded counts the outcome of a held poll.
func (m *metrics) proxyPollEnded(proxyType string, natType nat.Type, matched bool) {
	status := pollStatusIdle
	if matched {
		status = pollStatusMatched
	}
	m.proxyPoll.inc(string(natType), proxyType, status)
	if !matched {
		m.mu.Lock()
		m.interval.idle++
		m.mu.Unlock()
	}
}

func (m *metrics) proxyAnswered(proxyType string, delivered bool) {
	status := answerClientGone
	if delivered {
		status = answerSuccess
	}
	if proxyType == "" {
		proxyType = messages.ProxyTypeUnknown
	}
	m.proxyAnswer.inc(proxyType, status)
}

// clientPolled counts a client poll's outcome.
func (m *metrics) clientPolled(a netip.Addr, method string, natType nat.Type, status string) {
	cc := m.country(a)
	m.clientPoll.inc(string(natType), status, cc, method)
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.interval
	c.methodCount[method]++
	if a.IsValid() {
		c.methodCountries[method][cc]++
	}
	switch status {
	case clientMatched:
		c.matched++
	case clientTimeout:
		c.timedOut++
	case clientDenied:
		c.denied++
		if natType == nat.Unrestricted {
			c.unrestrictedDenied++
		} else {
			c.restrictedDenied++
		}
	}
}

// rotate ends the current interval at now and writes its block to w.
func (m *metrics) rotate(w io.Writer, now time.Time) error {
	m.mu.Lock()
	c := m.interval
	m.interval = newIntervalCounts(now)
	// Under the lock, as proxyPolled counts a new address: a proxy first
	// seen just after the swap must not lose its count to the reset.
	m.proxyTotal.Reset()
	m.mu.Unlock()
	_, err := io.WriteString(w, formatInterval(c, now))
	return err
}

// formatCountries writes "CC=N,CC=N" with counts rounded up to multiples
// of 8, largest first.
func formatCountries(counts map[string]uint64) string {
	type kv struct {
		cc string
		n  uint64
	}
	list := make([]kv, 0, len(counts))
	for cc, n := range counts {
		list = append(list, kv{cc, roundUp8(n)})
	}
	slices.SortFunc(list, func(a, b kv) int {
		if a.n != b.n {
			if a.n > b.n {
				return -1
			}
			return 1
		}
		return strings.Compare(a.cc, b.cc)
	})
	parts := make([]string, len(list))
	for i, e := range list {
		parts[i] = fmt.Sprintf("%s=%d", e.cc, e.n)
	}
	return strings.Join(parts, ",")
}

// formatInterval renders one metrics-log block (the format of upstream's
// doc/broker-spec.txt).
func formatInterval(c *intervalCounts, end time.Time) string {
	ips := map[string]uint64{}
	types := map[string]uint64{}
	nats := map[nat.Type]uint64{}
	for _, p := range c.proxies {
		ips[p.cc]++
		for t := range p.types {
			types[t]++
		}
		for n := range p.nats {
			nats[n]++
		}
	}
	var b strings.Builder
	secs := int64(end.Sub(c.start).Round(time.Second) / time.Second)
	fmt.Fprintf(&b, "snowflake-stats-end %s (%d s)\n", end.UTC().Format("2006-01-02 15:04:05"), secs)
	fmt.Fprintf(&b, "snowflake-ips %s\n", formatCountries(ips))
	for _, t := range messages.KnownProxyTypes {
		fmt.Fprintf(&b, "snowflake-ips-%s %d\n", t, roundUp8(types[t]))
	}
	fmt.Fprintf(&b, "snowflake-ips-total %d\n", roundUp8(uint64(len(c.proxies))))
	fmt.Fprintf(&b, "snowflake-idle-count %d\n", roundUp8(c.idle))
	fmt.Fprintf(&b, "snowflake-proxy-poll-with-relay-url-count %d\n", roundUp8(c.pollWithRelayURL))
	fmt.Fprintf(&b, "snowflake-proxy-poll-without-relay-url-count %d\n", roundUp8(c.pollWithoutRelayURL))
	fmt.Fprintf(&b, "snowflake-proxy-rejected-for-relay-url-count %d\n", roundUp8(c.rejectedRelayURL))
	fmt.Fprintf(&b, "client-denied-count %d\n", roundUp8(c.denied))
	fmt.Fprintf(&b, "client-restricted-denied-count %d\n", roundUp8(c.restrictedDenied))
	fmt.Fprintf(&b, "client-unrestricted-denied-count %d\n", roundUp8(c.unrestrictedDenied))
	fmt.Fprintf(&b, "client-snowflake-match-count %d\n", roundUp8(c.matched))
	fmt.Fprintf(&b, "client-snowflake-timeout-count %d\n", roundUp8(c.timedOut))
	for _, m := range rendezvousMethods {
		fmt.Fprintf(&b, "client-%s-count %d\n", m, roundUp8(c.methodCount[m]))
		fmt.Fprintf(&b, "client-%s-ips %s\n", m, formatCountries(c.methodCountries[m]))
	}
	for _, n := range []nat.Type{nat.Restricted, nat.Unrestricted, nat.Unknown} {
		fmt.Fprintf(&b, "snowflake-ips-nat-%s %d\n", n, roundUp8(nats[n]))
	}
	return b.String()
}
