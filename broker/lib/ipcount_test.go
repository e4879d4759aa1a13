package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/broker/ipcount"
	"github.com/snowflake-go/snowflake/common/amp"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
)

// runIPCountBroker serves a broker with IP counting on loopback until the
// returned stop function is called, which waits for Run to return.
func runIPCountBroker(t *testing.T, prefix string, interval time.Duration) (base string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{AllowedRelayPattern: "snowflake.torproject.net$", Listener: ln,
		ProxyPollTimeout: 20 * time.Millisecond, ClientTimeout: testClientTimeout, ClientWait: testClientWait,
		IPCountPrefix: prefix, IPCountInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func readReports(t *testing.T, dir string) []ipcount.Report {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "ipc-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []ipcount.Report
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		var r ipcount.Report
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b ipcount.Report) int { return a.Start.Compare(b.Start) })
	return out
}

// TestIPCountReport counts proxies and clients from several addresses over
// HTTP and AMP, and checks the report written when the broker stops.
func TestIPCountReport(t *testing.T) {
	dir := t.TempDir()
	base, stop := runIPCountBroker(t, filepath.Join(dir, "ipc-"), time.Hour)
	proxy := func(addr, typ string) {
		body, _ := (&messages.ProxyPollRequest{Sid: "s-" + addr + typ, Type: typ, NAT: nat.Restricted,
			AcceptedRelayPattern: "snowflake.torproject.net$"}).Encode()
		r := do(t, http.MethodPost, base+"/proxy", body, map[string]string{"X-Forwarded-For": addr})
		if r.status != 200 {
			t.Fatalf("proxy poll: %d", r.status)
		}
	}
	for _, a := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.1"} {
		proxy(a, "standalone")
	}
	proxy("198.51.100.4", "webext")
	proxy("2001:db8::5", "something-new") // counted as unknown
	client := clientPollBody(t, nat.Restricted)
	for _, a := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.1"} {
		// No proxy waits: denied, but the address was seen.
		r := do(t, http.MethodPost, base+"/client", []byte(client), map[string]string{"Forwarded": "for=" + a})
		if r.status != 200 {
			t.Fatalf("client poll: %d", r.status)
		}
	}
	// Over AMP the offer's candidate (203.0.113.7) stands for the client.
	if r := do(t, http.MethodGet, base+"/amp/client/"+amp.EncodePath([]byte(client)), nil, nil); r.status != 200 {
		t.Fatalf("AMP poll: %d", r.status)
	}
	stop()

	reports := readReports(t, dir)
	if len(reports) != 1 {
		t.Fatalf("%d reports, want 1", len(reports))
	}
	r := reports[0]
	want := map[string]map[string]uint64{
		"clients": {"total": 4, "http": 3, "ampcache": 1, "sqs": 0},
		"proxies": {"total": 5, "standalone": 4, "webext": 1, "badge": 0, "iptproxy": 0, "unknown": 1},
	}
	for g, labels := range want {
		for l, n := range labels {
			if got, ok := r.Counts[g][l]; !ok || got != n {
				t.Errorf("%s/%s = %d (present %v), want %d", g, l, got, ok, n)
			}
		}
	}
	if !r.End.After(r.Start) || time.Since(r.End) > time.Minute {
		t.Errorf("interval %v – %v", r.Start, r.End)
	}
	// No address appears in the report directory.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		for _, a := range []string{"198.51.100", "203.0.113", "2001:db8"} {
			if bytes.Contains(data, []byte(a)) {
				t.Errorf("%s contains %s", e.Name(), a)
			}
		}
	}
}

// TestIPCountIntervals checks that reports are written at interval
// boundaries, cover contiguous intervals, and count each interval afresh.
func TestIPCountIntervals(t *testing.T) {
	dir := t.TempDir()
	const interval = 300 * time.Millisecond
	base, stop := runIPCountBroker(t, filepath.Join(dir, "ipc-"), interval)
	client := []byte(clientPollBody(t, nat.Restricted))
	deadline := time.Now().Add(10 * time.Second)
	for len(readReports(t, dir)) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no periodic reports")
		}
		do(t, http.MethodPost, base+"/client", client, map[string]string{"X-Forwarded-For": "198.51.100.77"})
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	reports := readReports(t, dir)
	for i, r := range reports {
		if i > 0 && !r.Start.Equal(reports[i-1].End) {
			t.Errorf("report %d starts %v, previous ended %v", i, r.Start, reports[i-1].End)
		}
		if i < len(reports)-1 && r.End.Sub(r.Start) > interval+200*time.Millisecond {
			t.Errorf("report %d spans %v", i, r.End.Sub(r.Start))
		}
		// One address polled throughout: at most 1 per interval.
		if n := r.Counts["clients"]["http"]; n > 1 {
			t.Errorf("report %d counts %d addresses", i, n)
		}
	}
	if reports[1].Counts["clients"]["http"] != 1 {
		t.Errorf("a full interval of polls counted %d", reports[1].Counts["clients"]["http"])
	}
}
