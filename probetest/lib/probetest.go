// Package probetest is the NAT probe service of wire-protocol §4.5. A proxy
// sends it a WebRTC offer shaped like a proxy-poll response; the service
// answers from its own vantage point, which is deployed behind an
// address-dependent-mapping (symmetric) NAT. Only a proxy whose NAT does not
// filter by remote address can then complete ICE with it, so whether the
// proxy's data channel opens tells the proxy whether it is unrestricted.
//
// The service never sends data: it keeps each PeerConnection until the
// channel opens (plus a grace period, so the proxy sees it open) or the open
// timeout passes, then closes it.
package probetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/candidate"
	"github.com/snowflake-go/snowflake/common/closegroup"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/pionlog"
	"github.com/snowflake-go/snowflake/common/webrtcapi"
)

// Timing of one probe.
const (
	gatherTimeout = 10 * time.Second
	openTimeout   = 20 * time.Second
	// closeDelay keeps an opened channel alive long enough for the proxy to
	// see the open event.
	closeDelay = 5 * time.Second
	// DefaultMaxProbes bounds concurrent PeerConnections.
	DefaultMaxProbes = 1000
)

// stubSid is the Sid of every probe answer; the proxy ignores it.
const stubSid = "stub-sid"

// Errors of Config.Validate.
var (
	// ErrNegativeLimit means MaxProbes is negative.
	ErrNegativeLimit = errors.New("probetest: MaxProbes must not be negative")
)

// Config configures a Server. Zero values mean defaults.
type Config struct {
	// STUNURLs are the STUN servers used to gather server-reflexive
	// candidates.
	STUNURLs []string
	// KeepLocalAddresses keeps private and loopback candidates in answers
	// (for tests on one machine); deployed services hide them.
	KeepLocalAddresses bool
	// MaxProbes bounds concurrent probes; more get 503 (default 1000).
	MaxProbes int
	// ConfigureWebRTC, if set, is applied to the SettingEngine last (tests
	// use it for pion's virtual network).
	ConfigureWebRTC func(*webrtc.SettingEngine)
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

// Validate reports a bad field.
func (c *Config) Validate() error {
	if c.MaxProbes < 0 {
		return ErrNegativeLimit
	}
	return nil
}

// Server answers probes. Its handler serves /probe.
type Server struct {
	cfg   Config
	log   *slog.Logger
	api   *webrtc.API
	slots chan struct{} // one per live probe

	ctx    context.Context // cancelled by Close; ends every probe
	cancel context.CancelFunc
	// group counts probe requests in flight and their PeerConnections:
	// Close stops it and waits.
	group closegroup.Group
}

// New prepares a server.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxProbes == 0 {
		cfg.MaxProbes = DefaultMaxProbes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var se webrtc.SettingEngine
	se.LoggerFactory = pionlog.New(log)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	// Local addresses are removed from the answer text rather than by an
	// IP filter, which would also stop server-reflexive gathering on them.
	se.SetIncludeLoopbackCandidate(cfg.KeepLocalAddresses)
	if cfg.ConfigureWebRTC != nil {
		cfg.ConfigureWebRTC(&se)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:    cfg,
		log:    log,
		api:    webrtcapi.New(se),
		slots:  make(chan struct{}, cfg.MaxProbes),
		ctx:    ctx,
		cancel: cancel,
	}, nil
}

// Handler returns the HTTP handler: /probe, plus CORS pre-flight.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/probe", s.probe)
	return mux
}

// Close ends every probe and waits for them. It is idempotent.
func (s *Server) Close() error {
	s.group.Stop()
	s.cancel()
	s.group.Wait()
	return nil
}

func (s *Server) probe(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Access-Control-Allow-Headers", "Origin, X-Session-ID")
	if r.Method == http.MethodOptions {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, messages.MaxBodySize+1))
	if err != nil || len(body) > messages.MaxBodySize {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	req, err := messages.DecodeProxyPollResponse(body)
	if err != nil || req.Status != messages.StatusClientMatch {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	offer, err := messages.DecodeSessionDescription(req.Offer)
	if err != nil || offer.Type != messages.SDPTypeOffer {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	// The request counts in the group until answer has either closed its
	// PeerConnection or handed it to the closing goroutine, so Close waits
	// for it; writing the reply is left out, so a client that does not
	// read cannot hold Close up.
	if !s.group.Enter() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.group.Leave()
		http.Error(w, "too many probes", http.StatusServiceUnavailable)
		return
	}
	answer, err := s.answer(r.Context(), offer.SDP)
	s.group.Leave()
	if err != nil {
		s.log.Warn("probe failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	out, err := (&messages.AnswerRequest{Version: messages.ProxyVersion, Sid: stubSid, Answer: answer}).Encode()
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Write(out)
}

// answer creates the PeerConnection, returns its answer envelope, and
// leaves a goroutine that closes it later. It releases the probe's slot
// when the PeerConnection is closed. The caller must be a member of s.group,
// which the goroutine joins.
func (s *Server) answer(ctx context.Context, sdp string) (string, error) {
	release := func() { <-s.slots }
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{ICEServers: iceServers(s.cfg.STUNURLs)})
	if err != nil {
		release()
		return "", fmt.Errorf("probe: new peer connection: %w", err)
	}
	fail := func(err error) (string, error) {
		pc.Close()
		release()
		return "", err
	}
	opened := make(chan struct{})
	var once sync.Once
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() { once.Do(func() { close(opened) }) })
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return fail(fmt.Errorf("probe: set offer: %w", err))
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("probe: create answer: %w", err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return fail(fmt.Errorf("probe: set answer: %w", err))
	}
	t := time.NewTimer(gatherTimeout)
	select {
	case <-gathered:
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return fail(ctx.Err())
	case <-s.ctx.Done():
		t.Stop()
		return fail(s.ctx.Err())
	}
	t.Stop()
	answerSDP := pc.LocalDescription().SDP
	if !s.cfg.KeepLocalAddresses {
		answerSDP = candidate.StripLocal(answerSDP)
	}
	env, err := messages.SessionDescription{Type: messages.SDPTypeAnswer, SDP: answerSDP}.Encode()
	if err != nil {
		return fail(fmt.Errorf("probe: %w", err))
	}
	s.group.Join()
	go func() {
		defer s.group.Leave()
		defer release()
		defer pc.Close()
		t := time.NewTimer(openTimeout)
		defer t.Stop()
		select {
		case <-opened:
			// Let the proxy see the open before it is torn down.
			t.Reset(closeDelay)
			select {
			case <-t.C:
			case <-s.ctx.Done():
			}
		case <-t.C:
		case <-s.ctx.Done():
		}
	}()
	return env, nil
}

func iceServers(urls []string) []webrtc.ICEServer {
	if len(urls) == 0 {
		return nil
	}
	return []webrtc.ICEServer{{URLs: urls}}
}
