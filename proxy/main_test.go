package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	proxy "github.com/snowflake-go/snowflake/proxy/lib"
)

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi uint16
		ok     bool
	}{
		{"10000:20000", 10000, 20000, true},
		{"5000:5000", 5000, 5000, true},
		{"1:65535", 1, 65535, true},
		{"0:100", 0, 0, false},
		{"200:100", 0, 0, false},
		{"100", 0, 0, false},
		{"a:b", 0, 0, false},
		{"1:65536", 0, 0, false},
		{"", 0, 0, false},
	} {
		lo, hi, err := parsePortRange(tc.in)
		if (err == nil) != tc.ok || lo != tc.lo || hi != tc.hi {
			t.Errorf("parsePortRange(%q) = %d, %d, %v", tc.in, lo, hi, err)
		}
	}
}

func TestMetrics(t *testing.T) {
	p, err := proxy.New(proxy.Config{BrokerURL: "http://127.0.0.1:1/"})
	if err != nil {
		t.Fatal(err)
	}
	p.Stats().BytesUp.Add(1234)
	p.Stats().BytesDown.Add(5678)
	stop, addr, err := serveMetrics("127.0.0.1:0", p, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/internal/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		// Upstream's directions: inbound is relay to client.
		"tor_snowflake_proxy_traffic_inbound_bytes_total 5678",
		"tor_snowflake_proxy_traffic_outbound_bytes_total 1234",
		"tor_snowflake_proxy_connections_total 0",
		"tor_snowflake_proxy_active_connections 0",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
	if r, err := http.Get("http://" + addr + "/other"); err != nil || r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %v %v", r, err)
	} else {
		r.Body.Close()
	}
}

// Command lines written for upstream's snowflake-proxy must start this
// one: -log-local-time is one of its flags (timestamps are UTC unless it
// is given).
func TestUpstreamLogLocalTimeFlag(t *testing.T) {
	if err := run([]string{"-log-local-time", "-version"}); err != nil {
		t.Fatal(err)
	}
}

func TestLogTimes(t *testing.T) {
	loc := time.FixedZone("test", 2*60*60)
	stamp := time.Date(2025, 3, 1, 12, 0, 0, 0, loc)
	for _, tc := range []struct {
		local bool
		want  string
	}{
		{false, "time=2025-03-01T10:00:00.000Z "},
		{true, "time=2025-03-01T12:00:00.000+02:00 "},
	} {
		var buf bytes.Buffer
		h := logTimes(slog.NewTextHandler(&buf, nil), tc.local).WithAttrs([]slog.Attr{slog.String("a", "b")}).WithGroup("g")
		r := slog.NewRecord(stamp, slog.LevelInfo, "hello", 0)
		if err := h.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(buf.String(), tc.want) {
			t.Errorf("local %v: %q, want prefix %q", tc.local, buf.String(), tc.want)
		}
	}
}

// Upstream's snowflake-proxy refuses a -poll-interval below its 2 s
// minimum, 0 included, rather than starting with some other interval.
func TestPollIntervalBelowMinimumRefused(t *testing.T) {
	for _, interval := range []string{"0", "0s", "1s", "-5s"} {
		logPath := t.TempDir() + "/log"
		done := make(chan error, 1)
		go func() {
			done <- run([]string{"-poll-interval", interval,
				// Should it start, it only reaches loopback.
				"-broker", "http://127.0.0.1:1/", "-relay", "ws://127.0.0.1:1/",
				"-nat-probe-server", "", "-summary-interval", "0", "-log", logPath})
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "poll") {
				t.Errorf("-poll-interval %s: run() = %v, want an error about the poll interval", interval, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("-poll-interval %s: the proxy started", interval)
		}
	}
}

func TestSTUNURLs(t *testing.T) {
	defaults := []string{"stun:stun.l.google.com:19302", "stun:stun.voip.blackberry.com:3478"}
	for _, tc := range []struct {
		flag string
		want []string
	}{
		{"stun:127.0.0.1:3478", []string{"stun:127.0.0.1:3478"}},
		{" stun:a:1 , stun:b:2 ", []string{"stun:a:1", "stun:b:2"}},
		{"stun:a:1,,", []string{"stun:a:1"}},
		// Upstream's proxy falls back to its defaults for an empty -stun.
		{"", defaults},
		{" , ", defaults},
	} {
		if got := stunURLs(tc.flag); !slices.Equal(got, tc.want) {
			t.Errorf("stunURLs(%q) = %q, want %q", tc.flag, got, tc.want)
		}
	}
}

func TestSummaryText(t *testing.T) {
	for _, tc := range []struct {
		every           time.Duration
		conns, down, up int64
		want            string
	}{
		{time.Hour, 44, 483331072, 37006336,
			"In the last 1h0m0s, there were 44 completed successful connections. Traffic Relayed ↓ 472003 KB (131.11 KB/s), ↑ 36139 KB (10.04 KB/s)."},
		{time.Minute, 0, 0, 0,
			"In the last 1m0s, there were 0 completed successful connections. Traffic Relayed ↓ 0 KB (0.00 KB/s), ↑ 0 KB (0.00 KB/s)."},
	} {
		if got := summaryText(tc.every, tc.conns, tc.down, tc.up); got != tc.want {
			t.Errorf("summaryText(%v, %d, %d, %d) =\n%s\nwant\n%s", tc.every, tc.conns, tc.down, tc.up, got, tc.want)
		}
	}
}
