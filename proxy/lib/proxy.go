package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v5"
	"github.com/snowflake-go/snowflake/common/candidate"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/common/webrtcapi"
)

// Proxy is a Snowflake proxy. Create it with New and run it with Run.
type Proxy struct {
	cfg    Config // with defaults applied
	log    *slog.Logger
	api    *webrtcapi.Factory
	broker *brokerClient
	send   poster // also used by the NAT probe
	tokens *tokens
	gate   *relayGate
	relay  relayDialer
	stats  Stats

	natType atomic.Value // nat.Type
	wg      sync.WaitGroup
}

// New checks cfg and prepares a proxy.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	se, err := c.settingEngine()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	send := c.poster()
	b, err := newBrokerClient(c.BrokerURL, send, c.Type, c.Relay.Pattern)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &Proxy{
		cfg:    c,
		log:    c.Logger,
		api:    webrtcapi.NewFactory(se, c.iceCredentials()),
		broker: b,
		send:   send,
		tokens: newTokens(c.Capacity),
		gate:   newRelayGate(),
		relay:  c.relayDialer(),
	}
	p.natType.Store(nat.Unknown)
	return p, nil
}

// Stats returns the proxy's running totals.
func (p *Proxy) Stats() *Stats { return &p.stats }

// NAT returns the NAT type last found by the probe.
func (p *Proxy) NAT() nat.Type { return p.natType.Load().(nat.Type) }

// Run probes the NAT type, then polls the broker and serves clients until
// ctx is done. It returns after every client connection has been closed.
func (p *Proxy) Run(ctx context.Context) error {
	defer p.wg.Wait()
	if p.cfg.NATProbeURL != "" {
		t, err := p.probeNAT(ctx)
		if err != nil {
			p.log.Warn("NAT probe failed; NAT type stays unknown", "err", err)
		} else {
			p.natType.Store(t)
		}
		p.log.Info("NAT type", "nat", p.NAT())
		if p.cfg.NATRetestInterval > 0 {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.retestNAT(ctx)
			}()
		}
	}
	if p.cfg.SkipRelayCheck {
		p.gate.set(true)
	} else {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.watchRelay(ctx)
		}()
	}
	p.log.Info("proxy started", "broker", p.cfg.BrokerURL, "capacity", p.cfg.Capacity,
		"concurrent_polls", p.cfg.ConcurrentPolls)
	n := p.cfg.ConcurrentPolls
	if p.cfg.Capacity > 0 && n > p.cfg.Capacity {
		n = p.cfg.Capacity
	}
	for i := range n {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			// Stagger the pollers over one interval so the broker sees an
			// even stream of polls rather than bursts.
			if !sleep(ctx, p.cfg.PollInterval*time.Duration(i)/time.Duration(n)) {
				return
			}
			p.poller(ctx)
		}()
	}
	<-ctx.Done()
	return nil
}

// retestNAT re-runs the NAT probe every NATRetestInterval. A failed retest
// keeps the previous type.
func (p *Proxy) retestNAT(ctx context.Context) {
	t := time.NewTicker(p.cfg.NATRetestInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		nt, err := p.probeNAT(ctx)
		if err != nil {
			p.log.Warn("NAT retest failed; keeping the previous type", "nat", p.NAT(), "err", err)
			continue
		}
		if old := p.NAT(); old != nt {
			p.log.Info("NAT type changed", "from", old, "to", nt)
		}
		p.natType.Store(nt)
	}
}

// poller keeps one poll outstanding at the broker while a capacity token is
// free. After a match it polls again at once, so a burst of clients is
// served as fast as the broker can match them.
func (p *Proxy) poller(ctx context.Context) {
	backoff := p.cfg.PollInterval
	for {
		if !p.gate.passed(ctx) {
			return
		}
		if err := p.tokens.acquire(ctx); err != nil {
			return
		}
		sid := newSid()
		p.stats.Polls.Add(1)
		// The broker holds a poll for 10 s; the deadline ends one that
		// stalls beyond that even where the transport has no timeout of
		// its own (fetch in the browser, a caller's HTTPClient).
		pctx, cancel := context.WithTimeout(ctx, brokerTimeout)
		resp, err := p.broker.poll(pctx, sid, p.NAT(), p.clientCount()+1)
		cancel()
		if err != nil {
			p.tokens.release()
			if ctx.Err() != nil {
				return
			}
			p.stats.PollErrors.Add(1)
			p.log.Warn("poll failed", "err", err, "retry_in", backoff)
			if !sleep(ctx, jitter(backoff)) {
				return
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = p.cfg.PollInterval
		switch resp.Status {
		case messages.StatusClientMatch:
			p.stats.Matches.Add(1)
			m, err := p.checkMatch(resp)
			if err != nil {
				// Refused before any work: like a poll that found no
				// client, so it waits the interval. Polling again at
				// once would, with a broker that keeps sending such
				// clients, poll without pause and drop every one.
				p.tokens.release()
				p.stats.Failed.Add(1)
				p.log.Warn("client not served", "sid", sid, "err", err)
				break
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer p.tokens.release()
				p.serve(ctx, sid, m)
			}()
			continue
		case messages.StatusNoMatch:
			p.tokens.release()
		case messages.StatusIncorrectRelayPattern:
			p.tokens.release()
			p.log.Error("broker refused the relay pattern; is -allowed-relay-hostname-pattern too narrow?",
				"pattern", p.cfg.Relay.Pattern)
		default:
			p.tokens.release()
			p.stats.PollErrors.Add(1)
			p.log.Warn("poll: unexpected status", "status", resp.Status)
		}
		if !sleep(ctx, jitter(p.nextPoll(resp.NextPoll))) {
			return
		}
	}
}

// nextPoll turns the broker's NextPoll advice into a delay of at least the
// poll interval and at most an hour. The unit changed between upstream
// releases (seconds in 2.13.0/2.13.1, milliseconds after); no sane advice in
// milliseconds is below one second, so small values are seconds.
func (p *Proxy) nextPoll(advice int64) time.Duration {
	var d time.Duration
	switch {
	case advice <= 0:
		d = 0
	case advice < 1000:
		d = time.Duration(advice) * time.Second
	case advice > int64(maxNextPoll/time.Millisecond):
		d = maxNextPoll
	default:
		d = time.Duration(advice) * time.Millisecond
	}
	return min(max(d, p.cfg.PollInterval), maxNextPoll)
}

func (p *Proxy) clientCount() int { return int(p.stats.Active.Load()) }

// match is a matched client that passed checkMatch.
type match struct {
	relay *url.URL // the relay to dial
	sdp   string   // the client's offer
}

// checkMatch refuses a matched client whose relay this proxy does not
// accept or whose offer is not a session description of type offer (or,
// natively, not SDP). It takes no time, so the poller can do it before
// deciding when to poll next.
func (p *Proxy) checkMatch(resp *messages.ProxyPollResponse) (match, error) {
	relayURL := p.cfg.RelayURL
	if resp.RelayURL != "" {
		if _, err := p.cfg.Relay.Check(resp.RelayURL); err != nil {
			return match{}, fmt.Errorf("offer refused: %w", err)
		}
		relayURL = resp.RelayURL
	}
	relayU, err := parseRelay(relayURL)
	if err != nil {
		return match{}, fmt.Errorf("relay URL: %w", err)
	}
	offer, err := messages.DecodeSessionDescription(resp.Offer)
	if err != nil {
		return match{}, fmt.Errorf("offer: %w", err)
	}
	if offer.Type != messages.SDPTypeOffer {
		return match{}, fmt.Errorf("offer: SDP type is %q", offer.Type)
	}
	if err := checkOfferSDP(offer.SDP); err != nil {
		return match{}, fmt.Errorf("offer: %w", err)
	}
	return match{relay: relayU, sdp: offer.SDP}, nil
}

// serve handles one matched offer: answer, wait for the data channel, relay.
func (p *Proxy) serve(ctx context.Context, sid string, m match) {
	log := p.log.With("sid", sid)
	if err := p.serveErr(ctx, log, sid, m); err != nil {
		p.stats.Failed.Add(1)
		if ctx.Err() == nil {
			log.Warn("client not served", "err", err)
		}
	}
}

// Errors of serving one client.
var (
	// ErrClientGone means the broker no longer had the client when the
	// answer arrived.
	ErrClientGone = errors.New("client gone before the answer arrived")
	// ErrNoDataChannel means the client's data channel did not open in time.
	ErrNoDataChannel = errors.New("data channel did not open")
	// errPeerFailed ends a relay whose PeerConnection failed or closed.
	errPeerFailed = errors.New("peer connection failed")
)

func (p *Proxy) serveErr(ctx context.Context, log *slog.Logger, sid string, m match) error {
	relayU, offerSDP := m.relay, m.sdp
	if !strings.Contains(offerSDP, "a=candidate") {
		// Peer-reflexive candidates can still connect, so go on.
		log.Info("offer has no ICE candidates")
	}

	pc, err := p.api.NewPeerConnection(p.peerConfiguration())
	if err != nil {
		return fmt.Errorf("new peer connection: %w", err)
	}
	defer pc.Close()
	opened := make(chan *webrtc.DataChannel, 1)
	failed := make(chan struct{})
	var failOnce sync.Once
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() {
			select {
			case opened <- dc:
			default:
				// Only the first channel is relayed.
				dc.Close()
			}
		})
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			failOnce.Do(func() { close(failed) })
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		return fmt.Errorf("set offer: %w", err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("set answer: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(answerDeadline):
		log.Debug("ICE gathering incomplete at the answer deadline")
	case <-ctx.Done():
		return ctx.Err()
	}
	answerSDP := pc.LocalDescription().SDP
	if !p.cfg.KeepLocalAddresses {
		answerSDP = candidate.StripLocal(answerSDP)
	}
	answerSDP = p.shapeSDP(answerSDP)
	env, err := messages.SessionDescription{Type: messages.SDPTypeAnswer, SDP: answerSDP}.Encode()
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, brokerTimeout)
	ok, err := p.broker.answer(actx, sid, env)
	cancel()
	if err != nil {
		return err
	}
	if !ok {
		return ErrClientGone
	}

	var dc *webrtc.DataChannel
	select {
	case dc = <-opened:
	case <-failed:
		return fmt.Errorf("%w: ICE failed", ErrNoDataChannel)
	case <-time.After(openTimeout):
		return fmt.Errorf("%w within %v", ErrNoDataChannel, openTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	rwc, err := detachChannel(dc)
	if err != nil {
		return fmt.Errorf("detach data channel: %w", err)
	}
	defer rwc.Close()

	clientIP := candidate.ClientIP(offerSDP)
	ws, err := dialRelay(ctx, relayU, clientIP, p.relay)
	if err != nil {
		return err
	}
	p.stats.Connections.Add(1)
	if p.cfg.GeoIP != nil {
		cc, ok := "", false
		if clientIP.IsValid() {
			cc, ok = p.cfg.GeoIP.Lookup(clientIP)
		}
		if !ok {
			cc = "??"
		}
		p.stats.addCountry(cc)
	}
	p.stats.Active.Add(1)
	defer p.stats.Active.Add(-1)
	log.Info("client connected", "relay", relayU.Host)
	start := time.Now()
	var st relayStats
	// The relay also ends when the PeerConnection fails (ICE found the
	// client unreachable).
	rctx, rcancel := context.WithCancelCause(ctx)
	defer rcancel(nil)
	go func() {
		select {
		case <-failed:
			rcancel(errPeerFailed)
		case <-rctx.Done():
		}
	}()
	err = relay(rctx, dc, rwc, pc, ws, dcMessageLimit(dc, offerSDP), p.cfg.IdleTimeout, &st, &p.stats)
	log.Info("client disconnected", "duration", time.Since(start).Round(time.Millisecond),
		"up", st.up.Load(), "down", st.down.Load(), "cause", errString(err))
	return nil
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

func (p *Proxy) iceServers() []webrtc.ICEServer {
	if len(p.cfg.STUNURLs) == 0 {
		return nil
	}
	return []webrtc.ICEServer{{URLs: p.cfg.STUNURLs}}
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter spreads d by ±10% so that pollers do not fall into step.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}
