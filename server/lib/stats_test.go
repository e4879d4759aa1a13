package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/snowflake-go/snowflake/common/turbotunnel"
)

// gatherMetrics returns the metrics of the family name from reg (none if
// it is absent).
func gatherMetrics(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

// kcpSegments gathers the server's KCP segment counters by kind.
func kcpSegments(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	ms := gatherMetrics(t, reg, "snowflake_server_kcp_segments_total")
	out := map[string]float64{}
	for _, m := range ms {
		for _, l := range m.GetLabel() {
			if l.GetName() == "kind" {
				out[l.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if _, ok := out["sent"]; !ok {
		t.Fatalf("no snowflake_server_kcp_segments_total{kind=\"sent\"} in %v", ms)
	}
	if _, ok := out["retransmitted"]; !ok {
		t.Fatalf("no snowflake_server_kcp_segments_total{kind=\"retransmitted\"} in %v", ms)
	}
	return out
}

// TestKCPSegmentsMetric: an echoed download shows as KCP segments sent, at
// least one per full segment of data.
func TestKCPSegmentsMetric(t *testing.T) {
	ts := startServer(t, Config{})
	reg := prometheus.NewRegistry()
	if err := reg.Register(ts.srv.Collector()); err != nil {
		t.Fatal(err)
	}
	before := kcpSegments(t, reg)

	pconn := turbotunnel.NewRedialPacketConn(turbotunnel.NewClientID(),
		func(ctx context.Context) (net.Conn, error) { return ts.dialWS(ctx, "") }, nil)
	sess, err := turbotunnel.DialSession(pconn)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	const size = 256 << 10
	echo(t, st, size)
	st.Close()

	after := kcpSegments(t, reg)
	// The counters are process-wide (other tests' sessions add to them),
	// so only a lower bound on the growth holds.
	minSegs := float64(size / (turbotunnel.MTU - 24))
	if d := after["sent"] - before["sent"]; d < minSegs {
		t.Errorf("KCP segments sent grew by %v for a %d-byte echo, want >= %v", d, size, minSegs)
	}
	if after["retransmitted"] < before["retransmitted"] || after["retransmitted"] > after["sent"] {
		t.Errorf("retransmitted %v -> %v, sent %v", before["retransmitted"], after["retransmitted"], after["sent"])
	}
}

// TestIdleSessionsMetric: a session that falls quiet is counted idle, in
// Stats and as a gauge, and carries data again at once.
func TestIdleSessionsMetric(t *testing.T) {
	ts := startServer(t, Config{})
	reg := prometheus.NewRegistry()
	if err := reg.Register(ts.srv.Collector()); err != nil {
		t.Fatal(err)
	}
	gauge := func() float64 {
		ms := gatherMetrics(t, reg, "snowflake_server_sessions_idle")
		if len(ms) != 1 {
			t.Fatalf("%d snowflake_server_sessions_idle metrics, want 1", len(ms))
		}
		return ms[0].GetGauge().GetValue()
	}
	sess := dialTestSession(t, ts)
	st := openEcho(t, sess)
	echo(t, st, 64<<10)
	waitStat(t, ts, "the session to go idle", func(s Stats) bool { return s.SessionsIdle == 1 })
	if g := gauge(); g != 1 {
		t.Errorf("snowflake_server_sessions_idle = %v, want 1", g)
	}
	start := time.Now()
	echo(t, st, 1000)
	if d := time.Since(start); d > time.Second/2 {
		t.Errorf("an echo from an idle session took %v", d)
	}
}
