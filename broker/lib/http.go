package broker

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/snowflake-go/snowflake/common/amp"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
)

// ampPrefix is the path prefix of AMP-cache client polls.
const ampPrefix = "/amp/client/"

// Handler returns the broker's HTTP API.
func (b *Broker) Handler() http.Handler { return b.mux }

func (b *Broker) newMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/robots.txt", handleRobots)
	mux.Handle("/proxy", b.snowflakeHandler(b.handleProxy))
	mux.Handle("/client", b.snowflakeHandler(b.handleClient))
	mux.Handle("/answer", b.snowflakeHandler(b.handleAnswer))
	mux.Handle("/debug", b.snowflakeHandler(b.handleDebug))
	mux.Handle(ampPrefix, b.snowflakeHandler(b.handleAMP))
	mux.Handle("/metrics", b.snowflakeHandler(b.handleMetrics))
	mux.Handle("/prometheus", promhttp.HandlerFor(b.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}

// snowflakeHandler adds the CORS headers that browser-based proxies need
// and answers pre-flight requests.
func (b *Broker) snowflakeHandler(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Headers", "Origin, X-Session-ID")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		h(w, r)
	})
}

func handleRobots(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "User-agent: *\nDisallow: /\n")
}

// readBody reads a request body of at most messages.MaxBodySize bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	// A body declared too long is refused unread: reading would first
	// tell a client that sent Expect: 100-continue to send it.
	if r.ContentLength > messages.MaxBodySize {
		return nil, fmt.Errorf("broker: read body: %d bytes declared, over the %d-byte limit", r.ContentLength, messages.MaxBodySize)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, messages.MaxBodySize))
	if err != nil {
		return nil, fmt.Errorf("broker: read body: %w", err)
	}
	return body, nil
}

type encoder interface{ Encode() ([]byte, error) }

// writeJSON writes an encoded message with status 200, or 500 if encoding
// fails (which only a bug can cause).
func (b *Broker) writeJSON(w http.ResponseWriter, m encoder) {
	out, err := m.Encode()
	if err != nil {
		b.log.Error("encode response", "err", err)
		http.Error(w, "", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

func (b *Broker) handleProxy(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	req, err := messages.DecodeProxyPollRequest(body)
	if err != nil {
		b.log.Debug("bad proxy poll", "err", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	addr := clientAddr(r, b.cfg.TrustedHops)
	// HTTP/1 connections are parked: taken from net/http so that a held
	// poll costs no goroutine or buffers (see waiter). Others (HTTP/2)
	// wait in this goroutine.
	if r.ProtoMajor == 1 && !b.isClosed() {
		if refusal := b.admitProxy(req, addr); refusal != nil {
			b.writeJSON(w, refusal)
			return
		}
		if conn, brw, err := http.NewResponseController(w).Hijack(); err == nil {
			// Bytes already buffered past this request (pipelining)
			// would be lost with the reader: then close afterwards.
			keep := r.ProtoAtLeast(1, 1) && !r.Close && brw.Reader.Buffered() == 0
			b.parkProxyPoll(req, conn, keep)
			return
		}
		b.writeJSON(w, b.holdProxyPoll(r.Context(), req))
		return
	}
	b.writeJSON(w, b.proxyPoll(r.Context(), req, addr))
}

func (b *Broker) handleAnswer(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	req, err := messages.DecodeAnswerRequest(body)
	if err != nil {
		b.log.Debug("bad proxy answer", "err", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	// An answer without ICE candidates cannot connect (v2.6+ rule).
	if !strings.Contains(req.Answer, "a=candidate") {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	status := messages.StatusClientGone
	if b.answer(req.Sid, req.Answer) {
		status = messages.StatusSuccess
	}
	b.writeJSON(w, &messages.AnswerResponse{Status: status})
}

func (b *Broker) handleClient(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if messages.IsLegacyClientPoll(body) {
		b.handleLegacyClient(w, r, body)
		return
	}
	req, err := messages.DecodeClientPollRequest(body)
	if err != nil {
		b.writeJSON(w, &messages.ClientPollResponse{Error: messages.Reason(err)})
		return
	}
	b.writeJSON(w, b.ClientPoll(r.Context(), req, MethodHTTP, clientAddr(r, b.cfg.TrustedHops)))
}

// handleLegacyClient serves clients older than v1.1: the body is the offer,
// the NAT type is a header, and outcomes are HTTP statuses.
func (b *Broker) handleLegacyClient(w http.ResponseWriter, r *http.Request, body []byte) {
	natType, err := nat.Parse(r.Header.Get("Snowflake-NAT-Type"))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	req := &messages.ClientPollRequest{Offer: string(body), NAT: natType, Fingerprint: messages.DefaultBridgeFingerprint}
	resp := b.ClientPoll(r.Context(), req, MethodHTTP, clientAddr(r, b.cfg.TrustedHops))
	switch {
	case resp.Answer != "":
		w.Write([]byte(resp.Answer))
	case resp.Error == messages.ErrStrNoProxies:
		w.WriteHeader(http.StatusServiceUnavailable)
	case resp.Error == messages.ErrStrTimedOut:
		w.WriteHeader(http.StatusGatewayTimeout)
	default:
		// The default bridge is not in the bridge list.
		w.WriteHeader(http.StatusInternalServerError)
	}
}

// handleAMP serves client polls relayed by an AMP cache: the poll is in the
// path, the response is armored HTML that the cache accepts.
func (b *Broker) handleAMP(w http.ResponseWriter, r *http.Request) {
	var resp *messages.ClientPollResponse
	raw, err := amp.DecodePath(strings.TrimPrefix(r.URL.Path, ampPrefix))
	if err != nil {
		resp = &messages.ClientPollResponse{Error: messages.ErrStrBadURLPath}
	} else if req, err := messages.DecodeClientPollRequest(raw); err != nil {
		resp = &messages.ClientPollResponse{Error: messages.Reason(err)}
	} else {
		// The cache hides the client's address; the offer's first
		// public candidate stands in for statistics.
		resp = b.ClientPoll(r.Context(), req, MethodAMPCache, offerAddr(req.Offer))
	}
	out, err := resp.Encode()
	if err != nil {
		b.log.Error("encode AMP response", "err", err)
		http.Error(w, "", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html")
	// A short cache lifetime: each poll URL is unique anyway.
	w.Header().Set("Cache-Control", "max-age=15")
	w.WriteHeader(http.StatusOK)
	if err := amp.Armor(w, out); err != nil {
		b.log.Debug("write AMP response", "err", err)
	}
}

func (b *Broker) handleDebug(w http.ResponseWriter, r *http.Request) {
	counts := b.pools.snapshot()
	byType := map[string]int{}
	byNAT := map[nat.Type]int{}
	total := 0
	for k, n := range counts {
		byType[k.proxyType] += n
		byNAT[k.natType] += n
		total += n
	}
	var s strings.Builder
	fmt.Fprintf(&s, "current snowflakes available: %d\n", total)
	for _, t := range messages.KnownProxyTypes {
		fmt.Fprintf(&s, "\t%s proxies: %d\n", t, byType[t])
	}
	fmt.Fprintf(&s, "\t%s proxies: %d\n", messages.ProxyTypeUnknown, byType[messages.ProxyTypeUnknown])
	fmt.Fprintf(&s, "\nNAT Types available:\n")
	for _, n := range []nat.Type{nat.Restricted, nat.Unrestricted, nat.Unknown} {
		fmt.Fprintf(&s, "\t%s: %d\n", n, byNAT[n])
	}
	fmt.Fprintf(&s, "\nclients waiting for a proxy: %d\n", b.pools.waitingClients())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, s.String())
}

// handleMetrics serves the metrics log file.
func (b *Broker) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if b.cfg.MetricsLogPath == "" {
		http.NotFound(w, r)
		return
	}
	b.metricsFileMu.Lock()
	data, err := os.ReadFile(b.cfg.MetricsLogPath)
	b.metricsFileMu.Unlock()
	if errors.Is(err, os.ErrNotExist) {
		// No interval has ended yet.
		data, err = nil, nil
	}
	if err != nil {
		b.log.Error("read metrics log", "err", err)
		http.Error(w, "", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(data)
}
