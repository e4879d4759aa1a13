// Package client is the embeddable Snowflake client: a [Transport] whose
// Dial returns a net.Conn carried through a chain of volunteer WebRTC
// proxies to a Snowflake bridge, switching proxies as they come and go
// without breaking the connection.
//
// Per Dial the client picks a ClientID, runs one KCP+smux session over a
// redialling packet conn, and keeps up to Config.Max proxies: one carries
// traffic, the others wait to take over.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5"

	"github.com/snowflake-go/snowflake/common/closegroup"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/common/rendezvous"
	"github.com/snowflake-go/snowflake/common/turbotunnel"
	"github.com/snowflake-go/snowflake/common/webrtcapi"
)

// CollectInterval is the cadence of new proxy attempts while fewer than Max
// peers are live and attempts keep failing (upstream's steady rate).
const CollectInterval = 10 * time.Second

// FirstRetry is the wait after the first failed attempt; each further
// failure doubles it, up to CollectInterval. A proxy that ends before
// anything from the bridge came through it counts as a failed attempt (see
// session.collect). An upstream broker answers
// "no snowflake proxies currently available" at once when no proxy poll is
// waiting at that instant, which in a burst of clients lasts only until the
// proxies poll again: retrying after a second, not ten, got 50 clients
// arriving together connected in 4 s instead of 13. (Ours waits a moment
// for a proxy to poll before it answers so; see broker.Config.ClientWait.)
const FirstRetry = 1 * time.Second

// Transport makes Snowflake connections with one configuration. It is safe
// for concurrent use; Close ends every connection it made.
type Transport struct {
	cfg    Config
	logger *slog.Logger
	api    *webrtcapi.Factory
	method rendezvous.Method
	// closeIdle closes the pooled connections to the broker (or front).
	closeIdle func()
	nat       *natState
	// net is the network stack for WebRTC and NAT discovery; nil means the
	// operating system's. Tests set a pion virtual network here.
	net transport.Net
	// connectPeer runs one rendezvous; nil means newPeer. Tests of the
	// session's peer management set fakes here.
	connectPeer func(ctx context.Context) (peerConn, error)
	// sessionStarted, if set, sees each Dial's KCP/smux session as it
	// starts. Tests end it there as smux's keep-alive timeout would.
	sessionStarted func(*turbotunnel.Session)

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	once   sync.Once
	// group counts NAT discovery, Dials under way and every session's
	// goroutines: Close stops it and waits.
	group closegroup.Group

	connsMu sync.Mutex
	conns   map[*conn]struct{} // returned by Dial and not yet closed
}

// New validates cfg and returns a Transport. It starts NAT discovery against
// the STUN servers in the background. logger may be nil.
func New(cfg Config, logger *slog.Logger) (*Transport, error) {
	return newTransport(cfg, logger, nil)
}

func newTransport(cfg Config, logger *slog.Logger, n transport.Net) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &Transport{cfg: cfg, logger: logger, nat: newNATState(logger), net: n}
	method, closeIdle, err := newMethod(cfg)
	if err != nil {
		return nil, err
	}
	t.method, t.closeIdle = method, closeIdle
	t.api = t.webrtcAPI()
	if len(cfg.skippedICE) > 0 {
		logger.Warn("ignoring ice entries that are not stun: URLs", "entries", cfg.skippedICE)
		if len(cfg.ICEServers) == 0 {
			// As upstream, the client goes on; but behind a NAT it
			// cannot learn its address, and most proxies then fail to
			// reach it, which would otherwise look like a broken network.
			logger.Warn("no usable STUN server in ice=: connections through NATs will mostly fail; give at least one stun: URL")
		}
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	if len(cfg.ICEServers) > 0 {
		t.group.Go(t.discoverNAT)
	}
	return t, nil
}

// newMethod returns the rendezvous method cfg selects, and what closes its
// idle connections.
func newMethod(cfg Config) (rendezvous.Method, func(), error) {
	kind, err := cfg.RendezvousKind()
	if err != nil {
		return nil, nil, err
	}
	rt, err := rendezvous.NewRoundTripper(rendezvous.TransportConfig{
		RootCAs:     cfg.RootCAs,
		UTLSImitate: cfg.UTLSImitate,
		UTLSNoSNI:   cfg.UTLSNoSNI,
		Dial:        cfg.DialBroker,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("client: %w", err)
	}
	closeIdle := func() {}
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		closeIdle = c.CloseIdleConnections
	}
	var m rendezvous.Method
	switch kind {
	case RendezvousSQS:
		creds, err := rendezvous.ParseSQSCredentials(cfg.SQSCredentials)
		if err != nil {
			return nil, nil, fmt.Errorf("client: %w", err)
		}
		m, err = rendezvous.NewSQS(cfg.SQSQueueURL, creds, &http.Client{Transport: rt})
		if err != nil {
			return nil, nil, fmt.Errorf("client: %w", err)
		}
	case RendezvousAMP:
		m, err = rendezvous.NewAMP(cfg.BrokerURL, cfg.AMPCacheURL, cfg.FrontDomains, rt)
	default:
		m, err = rendezvous.NewHTTP(cfg.BrokerURL, cfg.FrontDomains, rt)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("client: %w", err)
	}
	return m, closeIdle, nil
}

func (t *Transport) discoverNAT() {
	servers := selectICEServers(t.cfg.ICEServers)
	typ, err := nat.Discover(t.ctx, t.net, servers, t.logger)
	if err != nil {
		t.logger.Info("NAT type discovery failed", "err", err)
		return
	}
	t.nat.set(typ)
	t.logger.Info("NAT type discovered", "nat", typ)
}

// NATType returns the NAT type the client would declare to the broker now.
func (t *Transport) NATType() nat.Type { return t.nat.declared() }

// Dial starts a new Snowflake session and returns its single stream. It
// returns once the first proxy is connected, or with ctx's error. The
// session outlives ctx; closing the returned conn ends it.
func (t *Transport) Dial(ctx context.Context) (net.Conn, error) {
	if !t.group.Enter() {
		return nil, net.ErrClosed
	}
	defer t.group.Leave()
	s := t.newSession()
	pconn := turbotunnel.NewRedialPacketConn(turbotunnel.NewClientID(), s.dial, t.logger)
	sess, err := turbotunnel.DialSession(pconn)
	if err != nil {
		pconn.Close()
		s.stop()
		return nil, fmt.Errorf("client: session: %w", err)
	}
	if t.sessionStarted != nil {
		t.sessionStarted(sess)
	}
	// Wait for the first proxy so that failures surface in Dial (and so
	// to tor as a refused SOCKS request) rather than as a silent stall.
	select {
	case <-s.first:
	case <-ctx.Done():
		sess.Close()
		s.stop()
		return nil, fmt.Errorf("client: dial: %w (last error: %v)", ctx.Err(), s.lastError())
	case <-s.ctx.Done(): // Close
		sess.Close()
		return nil, fmt.Errorf("client: dial: %w", net.ErrClosed)
	case <-sess.Done():
		// smux gave up: nothing arrived for its keep-alive timeout, as
		// no proxy connected. A proxy found now would serve nobody.
		s.stop()
		return nil, fmt.Errorf("client: dial: no proxy connected before the session's keep-alive timeout (last error: %v)", s.lastError())
	}
	stream, err := sess.OpenStream()
	if err != nil {
		sess.Close()
		s.stop()
		return nil, fmt.Errorf("client: open stream: %w", err)
	}
	c := &conn{Conn: stream, sess: sess, s: s, t: t}
	t.track(c)
	t.group.Join() // Dial is a member: Close waits for this too
	go func() {
		// A dead session (KCP gave up) ends the conn too, and so does
		// Close, if it cancelled the session before it could close the
		// conn (a Dial that returned while Close began).
		defer t.group.Leave()
		select {
		case <-sess.Done():
		case <-s.ctx.Done():
		}
		c.Close()
	}()
	return c, nil
}

// track records c as open, for Close.
func (t *Transport) track(c *conn) {
	t.connsMu.Lock()
	defer t.connsMu.Unlock()
	if t.conns == nil {
		t.conns = make(map[*conn]struct{})
	}
	t.conns[c] = struct{}{}
}

func (t *Transport) untrack(c *conn) {
	t.connsMu.Lock()
	defer t.connsMu.Unlock()
	delete(t.conns, c)
}

// closeConns closes the open conns, together. Each waits a moment for
// its stream's FIN to leave through the session's current proxy, so the
// server learns at once that the client is gone; that needs the proxies
// alive, so it comes before the sessions are cancelled.
func (t *Transport) closeConns() {
	t.connsMu.Lock()
	conns := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.connsMu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.Close() })
	}
	wg.Wait()
}

// Close ends every session, background task and Dial under way, and waits
// for them. It is idempotent.
func (t *Transport) Close() error {
	t.group.Stop()
	t.closeConns()
	t.once.Do(t.cancel)
	t.group.Wait()
	// Every exchange has ended with the sessions. A Transport serves one
	// SOCKS connection; its pooled broker connections would otherwise
	// linger (HTTP/2 ones for minutes), one set per connection tor made.
	if t.closeIdle != nil {
		t.closeIdle()
	}
	return nil
}

// conn is the stream returned by Dial; closing it ends its session.
type conn struct {
	net.Conn
	sess *turbotunnel.Session
	s    *session
	t    *Transport
	once sync.Once
}

func (c *conn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.sess.Close()
		c.s.stop()
		c.t.untrack(c)
	})
	return err
}

// peerConn is what a session needs of a connected proxy: a *dataconn.Conn.
type peerConn interface {
	net.Conn
	// Done is closed when the peer has closed, for whatever reason.
	Done() <-chan struct{}
	// Err says why it closed.
	Err() error
	// Heard reports whether anything came from the far end through it.
	Heard() bool
}

// connect runs one rendezvous for a session.
func (t *Transport) connect(ctx context.Context) (peerConn, error) {
	if t.connectPeer != nil {
		return t.connectPeer(ctx)
	}
	p, err := t.newPeer(ctx)
	if err != nil {
		return nil, err // not p: a nil *dataconn.Conn would be a non-nil peerConn
	}
	return p, nil
}

// session keeps up to Max proxies for one Dial.
type session struct {
	t      *Transport
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	ready chan peerConn // connected peers waiting to carry traffic
	wake  chan struct{} // a peer died: collect a replacement now
	live  atomic.Int32  // peers connected and not yet closed
	// failures counts the rendezvous in a row that failed or gave a peer
	// that ended before it proved itself; it sets the wait before the
	// next attempt (backoff).
	failures atomic.Int32

	first     chan struct{} // closed when the first peer is handed out
	firstOnce sync.Once

	errMu   sync.Mutex
	lastErr error
}

func (t *Transport) newSession() *session {
	ctx, cancel := context.WithCancel(t.ctx)
	s := &session{
		t: t, ctx: ctx, cancel: cancel,
		ready: make(chan peerConn, t.cfg.Max),
		wake:  make(chan struct{}, 1),
		first: make(chan struct{}),
	}
	s.wg.Add(1)
	go s.collect()
	// newSession runs in Dial (a member) or in tests before Close.
	t.group.Join()
	go func() {
		defer t.group.Leave()
		<-ctx.Done()
		s.wg.Wait()
		// Nobody takes from ready any more.
		for {
			select {
			case p := <-s.ready:
				p.Close()
			default:
				return
			}
		}
	}()
	return s
}

func (s *session) stop() { s.cancel() }

func (s *session) lastError() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.lastErr
}

// collect obtains proxies while fewer than Max are live. After failures it
// waits FirstRetry, doubling up to CollectInterval, so a broker without
// proxies is not hammered.
//
// A connected proxy is no success yet: one that hangs up at once, or
// never relays anything, would otherwise be replaced by a new rendezvous
// at once, over and over, and a broken or hostile proxy could make the
// client hammer the broker. So a peer proves itself only once something
// from the bridge came through it (see watch); one that ends before that
// counts as a failure. A proven peer's end clears the failures: a good
// proxy that leaves is replaced at once, which is what keeps a Tor user's
// circuits alive. Lifetime is no proof: a proxy that accepts and relays
// nothing lives until StaleTimeout, and counting that as success would
// let it bring a rendezvous every StaleTimeout for ever. A spare that goes
// stale unused counts as a failure too; that only spaces out the
// rendezvous that refresh spares, which nobody is waiting for.
func (s *session) collect() {
	defer s.wg.Done()
	tick := time.NewTicker(CollectInterval)
	defer tick.Stop()
	for {
		if int(s.live.Load()) < s.t.cfg.Max {
			if !s.backOff() {
				return
			}
			p, err := s.t.connect(s.ctx)
			if err == nil {
				s.live.Add(1)
				s.wg.Add(1)
				go s.watch(p)
				if !s.enqueue(p) {
					// Cannot happen while live <= Max; stay safe.
					p.Close()
				}
				continue
			}
			if s.ctx.Err() != nil {
				return
			}
			s.failures.Add(1)
			s.errMu.Lock()
			s.lastErr = err
			s.errMu.Unlock()
			var be *BrokerError
			if errors.As(err, &be) {
				s.t.logger.Info("no proxy this time", "err", err, "retry_in", s.retryDelay())
			} else {
				s.t.logger.Warn("proxy attempt failed", "err", err, "retry_in", s.retryDelay())
			}
			continue
		}
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		case <-s.wake:
		}
	}
}

// retryDelay is the wait before the next rendezvous: none after a success,
// FirstRetry after one failure, doubling with each further one up to
// CollectInterval.
func (s *session) retryDelay() time.Duration {
	n := s.failures.Load()
	if n <= 0 {
		return 0
	}
	d := FirstRetry
	for ; n > 1 && d < CollectInterval; n-- {
		d *= 2
	}
	return min(d, CollectInterval)
}

// backOff waits retryDelay before a rendezvous. It stops waiting early if
// a proven peer ends meanwhile (another peer of a session with Max > 1):
// its replacement should not wait for the spares' failures. It returns
// false if the session ended.
func (s *session) backOff() bool {
	d := s.retryDelay()
	if d == 0 {
		return s.ctx.Err() == nil
	}
	wait := time.NewTimer(d)
	defer wait.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return false
		case <-wait.C:
			return true
		case <-s.wake:
			if s.failures.Load() == 0 {
				return true
			}
		}
	}
}

// enqueue adds p to the ready queue. A spare that died while waiting
// (they all do after StaleTimeout, as nobody reads them) no longer counts
// as live but still holds its slot until dial skips it; with Max spares
// dead the queue would be full, every new peer thrown away, and its
// replacement sought at once, in a loop. So when the queue is full the dead
// are dropped to make room.
func (s *session) enqueue(p peerConn) bool {
	select {
	case s.ready <- p:
		return true
	default:
	}
	for range len(s.ready) {
		select {
		case q := <-s.ready:
			select {
			case <-q.Done():
				continue
			default:
			}
			// Only collect sends, so the slot just emptied is free.
			s.ready <- q
		default: // dial took the rest
		}
	}
	select {
	case s.ready <- p:
		return true
	default:
		return false
	}
}

// watch counts a peer as live until it closes, then asks for a successor,
// after recording whether the peer proved itself (see collect).
func (s *session) watch(p peerConn) {
	defer s.wg.Done()
	select {
	case <-p.Done():
	case <-s.ctx.Done():
		p.Close()
	}
	if err := p.Err(); err != nil {
		s.t.logger.Info("proxy connection ended", "err", err)
	}
	// Before live drops, so that collect, seeing room for a peer, sees
	// this too.
	if p.Heard() {
		s.failures.Store(0)
	} else if s.ctx.Err() == nil {
		s.failures.Add(1)
		s.t.logger.Info("proxy ended before anything came through it; backing off", "retry_in", s.retryDelay())
	}
	s.live.Add(-1)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// dial is the turbotunnel.DialFunc: it hands out the next live peer.
func (s *session) dial(ctx context.Context) (net.Conn, error) {
	for {
		select {
		case p := <-s.ready:
			select {
			case <-p.Done():
				continue // died while waiting in the queue
			default:
			}
			s.firstOnce.Do(func() { close(s.first) })
			return p, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
			return nil, net.ErrClosed
		}
	}
}
