package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snowflake-go/snowflake/broker/ipcount"
	"github.com/snowflake-go/snowflake/common/geoip"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/common/relaypattern"
)

// Broker matches client offers with waiting proxies. Create it with New;
// its methods are safe for concurrent use.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	pools   *pools
	metrics *metrics
	// ipCount counts distinct addresses for Config.IPCountPrefix; nil
	// when that is off.
	ipCount *ipcount.Counter

	// nextPoll holds the advised poll intervals, replaceable at run time
	// (see SetNextPoll).
	nextPollUnrestricted, nextPollRestricted atomic.Int64 // milliseconds
	// noMatch holds the encoded "no match" responses per pool, rebuilt
	// by SetNextPoll.
	noMatch [2]atomic.Pointer[[]byte]

	// closed is closed by Close; held polls end at once when it is.
	// closedCtx is cancelled at the same time.
	closed      chan struct{}
	closedCtx   context.Context
	closeCancel context.CancelFunc
	closeOnce   sync.Once

	// mux is the HTTP API (see Handler).
	mux http.Handler
	// resumed are kept-alive connections of answered parked polls.
	resumed resumedConns
	// readers recycles the read buffers of kept-alive connections.
	readers sync.Pool
	// expiries ends the holds of parked polls.
	expiries *expiryQueue

	// metricsFileMu serialises appends to the metrics log with reads of
	// it by /metrics.
	metricsFileMu sync.Mutex
}

// New returns a Broker for cfg.
func New(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	b := &Broker{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "broker"),
		pools:  newPools(),
		closed: make(chan struct{}),
	}
	b.closedCtx, b.closeCancel = context.WithCancel(context.Background())
	b.expiries = newExpiryQueue(cfg.ProxyPollTimeout)
	b.metrics = newMetrics(b.pools, time.Now())
	// A disconnected proxy's poll ends without a client, as if its hold
	// had expired: the expiry queue then skips it.
	b.pools.discarded = func(w *waiter) { b.metrics.proxyPollEnded(w.proxyType, w.natType, false) }
	if cfg.IPCountPrefix != "" {
		var err error
		if b.ipCount, err = ipcount.New(ipCountGroups(), time.Now()); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	b.mux = b.newMux()
	b.metrics.geo.Store(cfg.GeoIP)
	for _, br := range cfg.Bridges {
		// Proxies drop offers for relays outside their pattern, and the
		// broker admits only proxies whose pattern covers its own; a
		// bridge outside the broker's pattern is therefore unusable.
		if u, err := url.Parse(br.WebSocketAddress); err == nil && !relaypattern.Match(cfg.AllowedRelayPattern, u.Hostname()) {
			b.log.Warn("bridge relay is outside -allowed-relay-pattern; proxies will drop its clients",
				"bridge", br.DisplayName, "relay", br.WebSocketAddress, "pattern", cfg.AllowedRelayPattern)
		}
	}
	b.SetNextPoll(cfg.NextPollUnrestricted, cfg.NextPollRestricted)
	if b.noMatch[0].Load() == nil || b.noMatch[1].Load() == nil {
		return nil, b.encodeNoMatch()
	}
	go b.expiries.run(b.closed, b.expireParked)
	return b, nil
}

// Close ends all held polls and stops Run. It is idempotent.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		close(b.closed)
		b.closeCancel()
		<-b.expiries.done
		b.releaseParked()
		b.closeResumed()
	})
	return nil
}

// SetGeoIP replaces the geoip table used for statistics (e.g. on SIGHUP).
func (b *Broker) SetGeoIP(t *geoip.Table) { b.metrics.geo.Store(t) }

// SetNextPoll replaces the poll intervals advised to proxies of each pool;
// zero keeps the default.
func (b *Broker) SetNextPoll(unrestricted, restricted time.Duration) {
	if unrestricted <= 0 {
		unrestricted = DefaultNextPoll
	}
	if restricted <= 0 {
		restricted = DefaultNextPoll
	}
	b.nextPollUnrestricted.Store(unrestricted.Milliseconds())
	b.nextPollRestricted.Store(restricted.Milliseconds())
	if err := b.encodeNoMatch(); err != nil {
		// A status and a number always encode; keep the old bodies.
		b.log.Error("encode no-match response", "err", err)
	}
}

func (b *Broker) encodeNoMatch() error {
	for _, t := range []nat.Type{nat.Restricted, nat.Unrestricted} {
		body, err := b.noMatchResponse(t).Encode()
		if err != nil {
			return fmt.Errorf("broker: encode no-match response: %w", err)
		}
		b.noMatch[poolFor(t)].Store(&body)
	}
	return nil
}

func (b *Broker) nextPoll(t nat.Type) int64 {
	if poolFor(t) == poolUnrestricted {
		return b.nextPollUnrestricted.Load()
	}
	return b.nextPollRestricted.Load()
}

// maxPollInterval bounds intervals read from a poll-interval file, so a
// typo cannot silence the proxy fleet for days.
const maxPollInterval = 24 * time.Hour

// ParsePollIntervals reads the poll-interval file:
// {"unrestricted_poll_interval":MS,"restricted_poll_interval":MS}. Absent
// keys are returned as zero (meaning the default).
func ParsePollIntervals(r io.Reader) (unrestricted, restricted time.Duration, err error) {
	var j struct {
		Unrestricted *int64 `json:"unrestricted_poll_interval"`
		Restricted   *int64 `json:"restricted_poll_interval"`
	}
	dec := json.NewDecoder(io.LimitReader(r, messages.MaxBodySize))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return 0, 0, fmt.Errorf("broker: poll interval file: %w", err)
	}
	conv := func(name string, ms *int64) (time.Duration, error) {
		if ms == nil {
			return 0, nil
		}
		// Compared in milliseconds: a large value would overflow
		// time.Duration, wrap negative and pass a check made after the
		// conversion.
		if *ms <= 0 || *ms > maxPollInterval.Milliseconds() {
			return 0, fmt.Errorf("broker: poll interval file: %s %d ms out of range (1 ms to %v)", name, *ms, maxPollInterval)
		}
		return time.Duration(*ms) * time.Millisecond, nil
	}
	if unrestricted, err = conv("unrestricted_poll_interval", j.Unrestricted); err != nil {
		return 0, 0, err
	}
	if restricted, err = conv("restricted_poll_interval", j.Restricted); err != nil {
		return 0, 0, err
	}
	return unrestricted, restricted, nil
}

// errClosed is returned by operations interrupted by Close.
var errClosed = errors.New("broker: closed")

// ClientPoll runs the client-poll logic shared by every rendezvous method:
// look up the requested bridge, take a waiting proxy (waiting up to the
// client wait for one to poll if none fits), then wait up to the client
// timeout for the proxy's answer. The result is the response to send; addr
// (possibly invalid) is used only for statistics.
func (b *Broker) ClientPoll(ctx context.Context, req *messages.ClientPollRequest, method string, addr netip.Addr) *messages.ClientPollResponse {
	b.countIP(addr, ipGroupClients, method)
	bridge, ok := b.cfg.Bridges.Lookup(req.Fingerprint)
	if !ok {
		return &messages.ClientPollResponse{Error: messages.ErrStrUnknownBridge}
	}
	w, m := b.takeProxy(ctx, req.NAT)
	if w == nil {
		b.metrics.clientPolled(addr, method, req.NAT, clientDenied)
		return &messages.ClientPollResponse{Error: messages.ErrStrNoProxies}
	}
	defer b.pools.finish(w.sid, m)
	o := offer{sdp: req.Offer, natType: req.NAT, relayURL: bridge.WebSocketAddress}
	if w.conn != nil {
		b.metrics.proxyPollEnded(w.proxyType, w.natType, true)
		b.writeParked(w, b.matchBody(w, o))
	} else {
		w.ch <- o // never blocks: capacity 1, and only the taker sends
	}
	timer := time.NewTimer(b.cfg.ClientTimeout)
	defer timer.Stop()
	select {
	case answer := <-m.answer:
		b.metrics.clientPolled(addr, method, req.NAT, clientMatched)
		return &messages.ClientPollResponse{Answer: answer}
	case <-timer.C:
	case <-ctx.Done():
	case <-b.closed:
	}
	b.metrics.clientPolled(addr, method, req.NAT, clientTimeout)
	return &messages.ClientPollResponse{Error: messages.ErrStrTimedOut}
}

// takeProxy takes a waiting proxy for a client of NAT type clientNAT. If
// none fits, it waits up to the client wait for one to poll: when clients
// outnumber proxies for a moment (a burst of clients, or proxies busy
// re-polling), a client that is told "no proxies" retries only after
// seconds (10 s for upstream clients), while a proxy usually polls again
// within a second. It returns nil if no proxy came.
func (b *Broker) takeProxy(ctx context.Context, clientNAT nat.Type) (*waiter, *match) {
	if b.cfg.ClientWait <= 0 {
		return b.pools.take(clientNAT)
	}
	w, m, cw := b.pools.takeOrWait(clientNAT)
	if cw == nil {
		return w, m
	}
	timer := time.NewTimer(b.cfg.ClientWait)
	defer timer.Stop()
	select {
	case h := <-cw.got:
		return h.w, h.m
	case <-timer.C:
	case <-ctx.Done():
	case <-b.closed:
	}
	// A proxy handed over just now is served even if the client left: its
	// poll is then answered with the offer, as after any match whose client
	// goes away.
	return b.pools.stopWaiting(cw)
}

func (b *Broker) matchResponse(w *waiter, o offer) *messages.ProxyPollResponse {
	return &messages.ProxyPollResponse{Status: messages.StatusClientMatch, Offer: o.sdp, NAT: o.natType,
		NextPoll: b.nextPoll(w.natType), RelayURL: o.relayURL}
}

func (b *Broker) noMatchResponse(natType nat.Type) *messages.ProxyPollResponse {
	return &messages.ProxyPollResponse{Status: messages.StatusNoMatch, NextPoll: b.nextPoll(natType)}
}

// admitProxy applies the relay-pattern rule (§2.9) and counts the poll. It
// returns the response to send at once if the proxy is refused, else nil.
func (b *Broker) admitProxy(req *messages.ProxyPollRequest, addr netip.Addr) *messages.ProxyPollResponse {
	proxyType := messages.NormalizeProxyType(req.Type)
	b.countIP(addr, ipGroupProxies, proxyType)
	pattern, hadPattern := req.AcceptedRelayPattern, !req.NoRelayPattern
	if !hadPattern {
		pattern = b.cfg.LegacyRelayPattern
	}
	if (!hadPattern && b.cfg.LegacyRelayPattern == "") || !relaypattern.IsSubset(pattern, b.cfg.AllowedRelayPattern) {
		b.metrics.proxyPolled(addr, proxyType, req.NAT, hadPattern, true)
		return &messages.ProxyPollResponse{Status: messages.StatusIncorrectRelayPattern, NextPoll: RejectedNextPoll.Milliseconds()}
	}
	b.metrics.proxyPolled(addr, proxyType, req.NAT, hadPattern, false)
	return nil
}

func (b *Broker) isClosed() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

func newWaiter(req *messages.ProxyPollRequest) *waiter {
	return &waiter{sid: req.Sid, proxyType: messages.NormalizeProxyType(req.Type), natType: req.NAT, clients: req.Clients}
}

// proxyPoll runs the whole proxy-poll logic in the calling goroutine:
// admit, then hold the poll until a client takes the proxy or the hold
// ends. It serves connections that cannot be parked (HTTP/2).
func (b *Broker) proxyPoll(ctx context.Context, req *messages.ProxyPollRequest, addr netip.Addr) *messages.ProxyPollResponse {
	if r := b.admitProxy(req, addr); r != nil {
		return r
	}
	return b.holdProxyPoll(ctx, req)
}

// holdProxyPoll holds an admitted poll in the calling goroutine.
func (b *Broker) holdProxyPoll(ctx context.Context, req *messages.ProxyPollRequest) *messages.ProxyPollResponse {
	w := newWaiter(req)
	w.ch = make(chan offer, 1)
	if b.isClosed() || !b.pools.add(w, b.cfg.MaxWaitingProxies) {
		b.metrics.proxyPollEnded(w.proxyType, w.natType, false)
		return b.noMatchResponse(w.natType)
	}
	timer := time.NewTimer(b.cfg.ProxyPollTimeout)
	defer timer.Stop()
	var o offer
	select {
	case o = <-w.ch:
	case <-timer.C:
	case <-ctx.Done():
	case <-b.closed:
	}
	if o.sdp == "" {
		if b.pools.withdraw(w) {
			b.metrics.proxyPollEnded(w.proxyType, w.natType, false)
			return b.noMatchResponse(w.natType)
		}
		// A client took this proxy just as the hold ended: its offer is
		// on the way.
		o = <-w.ch
	}
	b.metrics.proxyPollEnded(w.proxyType, w.natType, true)
	return b.matchResponse(w, o)
}

// parkProxyPoll holds an admitted poll whose connection was hijacked from
// net/http: no goroutine waits for it; the expiry queue or a client
// answers it.
func (b *Broker) parkProxyPoll(req *messages.ProxyPollRequest, conn net.Conn, keepAlive bool) {
	// net/http may have left deadlines on the connection; the hold and
	// writeParked set their own.
	conn.SetDeadline(time.Time{})
	w := newWaiter(req)
	w.conn = conn
	w.keepAlive = keepAlive
	if b.isClosed() || !b.pools.add(w, b.cfg.MaxWaitingProxies) {
		b.metrics.proxyPollEnded(w.proxyType, w.natType, false)
		b.writeParked(w, b.noMatchBody(w.natType))
		return
	}
	b.expiries.push(w)
}

// expireParked answers a parked poll whose hold ended, unless a client
// took it first.
func (b *Broker) expireParked(w *waiter) {
	if !b.pools.withdraw(w) {
		return
	}
	b.metrics.proxyPollEnded(w.proxyType, w.natType, false)
	b.writeParked(w, b.noMatchBody(w.natType))
}

// parkedWriteTimeout bounds the write of a parked poll's response; it
// is small, and a proxy that does not read it is gone.
const parkedWriteTimeout = 5 * time.Second

// writeParked sends a complete HTTP/1.1 response with the given JSON body
// on a parked connection, then keeps the connection alive (see serveConn)
// or closes it. The write happens in the connection's own goroutine, so a
// proxy that does not read cannot stall the caller (the expiry queue or a
// client poll).
func (b *Broker) writeParked(w *waiter, body []byte) {
	keep := w.keepAlive && !b.isClosed()
	msg := make([]byte, 0, 192+len(body))
	msg = append(msg, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"+
		"Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Headers: Origin, X-Session-ID\r\n"...)
	if !keep {
		msg = append(msg, "Connection: close\r\n"...)
	}
	msg = append(msg, "Content-Length: "...)
	msg = strconv.AppendInt(msg, int64(len(body)), 10)
	msg = append(msg, "\r\n\r\n"...)
	msg = append(msg, body...)
	if b.resume(w.conn, msg, keep) {
		return
	}
	// Closing: answer here, bounded by the write timeout.
	w.conn.SetWriteDeadline(time.Now().Add(parkedWriteTimeout))
	if _, err := w.conn.Write(msg); err != nil {
		b.log.Debug("write parked proxy response", "err", err)
	}
	w.conn.Close()
}

// noMatchBody returns the encoded "no match" response for a proxy of the
// given NAT type, prepared by SetNextPoll: it is most of what the broker
// sends.
func (b *Broker) noMatchBody(t nat.Type) []byte {
	return *b.noMatch[poolFor(t)].Load()
}

// matchBody encodes the response that gives o to w.
func (b *Broker) matchBody(w *waiter, o offer) []byte {
	body, err := b.matchResponse(w, o).Encode()
	if err != nil {
		// Only a bug can get here: the offer was decoded from JSON.
		b.log.Error("encode proxy poll response", "err", err)
		return b.noMatchBody(w.natType)
	}
	return body
}

// releaseParked answers every parked poll at Close.
func (b *Broker) releaseParked() {
	for _, w := range b.pools.drainParked() {
		b.metrics.proxyPollEnded(w.proxyType, w.natType, false)
		b.writeParked(w, b.noMatchBody(w.natType))
	}
}

// answer delivers a proxy's answer for the poll with the given Sid. It
// reports whether a client was still waiting for it; an answer that is not
// delivered (unknown Sid, or a second answer for one) counts as client gone.
func (b *Broker) answer(sid, answer string) bool {
	proxyType, ok := b.pools.answer(sid, answer)
	b.metrics.proxyAnswered(proxyType, ok)
	return ok
}

// Waiting returns the number of proxies currently held.
func (b *Broker) Waiting() int { return b.pools.waiting() }

// rotateMetrics appends the finished interval's block to the metrics log.
func (b *Broker) rotateMetrics(now time.Time) error {
	b.metricsFileMu.Lock()
	defer b.metricsFileMu.Unlock()
	f, err := os.OpenFile(b.cfg.MetricsLogPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("broker: metrics log: %w", err)
	}
	werr := b.metrics.rotate(f, now)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("broker: metrics log: %w", err)
	}
	return nil
}
