package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/xtaci/kcp-go/v5"
)

// errReason classifies the errors the server counts.
type errReason int

const (
	errUpgrade       errReason = iota // the request was not a valid WebSocket upgrade
	errPreamble                       // the stream did not start with token + ClientID
	errFrame                          // an encapsulation prefix was malformed
	errOversize                       // a data chunk was longer than a KCP packet
	errQueueFull                      // a packet was dropped because KCP was behind
	errSendQueueFull                  // a packet to a client was dropped: its WebSocket was behind
	errWrite                          // a WebSocket write failed or timed out
	errORDial                         // connecting a stream to tor failed
	numErrReasons
)

var errReasonNames = [numErrReasons]string{
	errUpgrade:       "upgrade",
	errPreamble:      "preamble",
	errFrame:         "frame",
	errOversize:      "oversize",
	errQueueFull:     "queue_full",
	errSendQueueFull: "send_queue_full",
	errWrite:         "write",
	errORDial:        "or_dial",
}

func (r errReason) String() string { return errReasonNames[r] }

// counters are the server's statistics, updated lock-free on the data path.
type counters struct {
	wsTotal, wsActive, wsRejected atomic.Int64
	sessionsTotal, sessionsActive atomic.Int64
	streamsTotal, streamsActive   atomic.Int64
	bytesUp, bytesDown            atomic.Int64 // client->tor, tor->client
	errors                        [numErrReasons]atomic.Int64
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	WebSocketsTotal, WebSocketsActive, WebSocketsRejected int64
	SessionsTotal, SessionsActive                         int64
	// SessionsIdle counts the active sessions whose KCP timer runs at the
	// idle interval (nothing in flight), as of the last sweep.
	SessionsIdle                int64
	StreamsTotal, StreamsActive int64
	// BytesUp counts bytes from clients to tor; BytesDown the reverse.
	BytesUp, BytesDown int64
	// Errors counts errors by reason: upgrade, preamble, frame, oversize,
	// queue_full, send_queue_full, write, or_dial.
	Errors map[string]int64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := s.stats
	st := Stats{
		WebSocketsTotal:    c.wsTotal.Load(),
		WebSocketsActive:   c.wsActive.Load(),
		WebSocketsRejected: c.wsRejected.Load(),
		SessionsTotal:      c.sessionsTotal.Load(),
		SessionsActive:     c.sessionsActive.Load(),
		StreamsTotal:       c.streamsTotal.Load(),
		StreamsActive:      c.streamsActive.Load(),
		BytesUp:            c.bytesUp.Load(),
		BytesDown:          c.bytesDown.Load(),
		Errors:             make(map[string]int64, numErrReasons),
	}
	for r := range numErrReasons {
		st.Errors[r.String()] = c.errors[r].Load()
	}
	for _, sh := range s.shards {
		st.Errors[errSendQueueFull.String()] += int64(sh.pconn.DroppedOutgoing())
		st.SessionsIdle += int64(sh.ln.IdleSessions())
	}
	return st
}

// LogStats logs a summary of the counters every interval until ctx ends.
func (s *Server) LogStats(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-t.C:
			st := s.Stats()
			s.logger.Info("stats",
				"websockets_active", st.WebSocketsActive, "websockets_total", st.WebSocketsTotal,
				"websockets_rejected", st.WebSocketsRejected,
				"sessions_active", st.SessionsActive, "sessions_idle", st.SessionsIdle, "sessions_total", st.SessionsTotal,
				"streams_active", st.StreamsActive, "streams_total", st.StreamsTotal,
				"bytes_up", st.BytesUp, "bytes_down", st.BytesDown, "errors", st.Errors)
		}
	}
}

// Collector returns a Prometheus collector over the server's counters, for
// the caller to register.
func (s *Server) Collector() prometheus.Collector { return &collector{s: s} }

type collector struct{ s *Server }

var (
	descWS = prometheus.NewDesc("snowflake_server_websocket_connections_total",
		"WebSocket connections accepted.", nil, nil)
	descWSActive = prometheus.NewDesc("snowflake_server_websocket_connections",
		"WebSocket connections open now.", nil, nil)
	descWSRejected = prometheus.NewDesc("snowflake_server_websocket_rejected_total",
		"Connections refused because the server was at its connection limit.", nil, nil)
	descSessions = prometheus.NewDesc("snowflake_server_sessions_total",
		"Turbotunnel (KCP+smux) sessions started.", nil, nil)
	descSessionsActive = prometheus.NewDesc("snowflake_server_sessions",
		"Turbotunnel sessions alive now.", nil, nil)
	descSessionsIdle = prometheus.NewDesc("snowflake_server_sessions_idle",
		"Sessions alive now with nothing in flight, or a client silent with data in flight, whose KCP timer runs slowly.", nil, nil)
	descStreams = prometheus.NewDesc("snowflake_server_streams_total",
		"Streams (tor connections) opened.", nil, nil)
	descStreamsActive = prometheus.NewDesc("snowflake_server_streams",
		"Streams open now.", nil, nil)
	descBytes = prometheus.NewDesc("snowflake_server_bytes_total",
		"Stream bytes relayed, by direction (up: client to tor).", []string{"direction"}, nil)
	descErrors = prometheus.NewDesc("snowflake_server_errors_total",
		"Errors, by reason.", []string{"reason"}, nil)
	descKCPSegments = prometheus.NewDesc("snowflake_server_kcp_segments_total",
		"KCP segments sent, by kind (sent: all; retransmitted: the part that were resends).", []string{"kind"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWS, descWSActive, descWSRejected, descSessions,
		descSessionsActive, descSessionsIdle, descStreams, descStreamsActive, descBytes, descErrors, descKCPSegments} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		if m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, float64(v), labels...); err == nil {
			ch <- m
		}
	}
	gauge := func(d *prometheus.Desc, v int64) {
		if m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, float64(v)); err == nil {
			ch <- m
		}
	}
	counter(descWS, st.WebSocketsTotal)
	gauge(descWSActive, st.WebSocketsActive)
	counter(descWSRejected, st.WebSocketsRejected)
	counter(descSessions, st.SessionsTotal)
	gauge(descSessionsActive, st.SessionsActive)
	gauge(descSessionsIdle, st.SessionsIdle)
	counter(descStreams, st.StreamsTotal)
	gauge(descStreamsActive, st.StreamsActive)
	counter(descBytes, st.BytesUp, "up")
	counter(descBytes, st.BytesDown, "down")
	for r := range numErrReasons {
		counter(descErrors, st.Errors[r.String()], r.String())
	}
	// KCP counts process-wide; every KCP session in this process is one of
	// the server's.
	counter(descKCPSegments, int64(atomic.LoadUint64(&kcp.DefaultSnmp.OutSegs)), "sent")
	counter(descKCPSegments, int64(atomic.LoadUint64(&kcp.DefaultSnmp.RetransSegs)), "retransmitted")
}
