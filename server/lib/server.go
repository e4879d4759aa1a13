// Package server is the Snowflake bridge server: it accepts WebSocket
// connections from proxies, joins the turbotunnel packets they carry into one
// KCP+smux session per client (by ClientID, across proxy changes), and hands
// every smux stream to tor.
//
// Flow of one client's bytes:
//
//	WebSocket (one per proxy) -> preamble (token, ClientID) -> encapsulated packets
//	  -> shard chosen by ClientID: turbotunnel.QueuePacketConn -> KCP -> smux
//	  -> one stream = one connection from Config.DialOR (tor's ExtORPort)
//
// Sessions are sharded over several independent KCP state machines
// (Config.NumTurbotunnel, default one per usable CPU), so one busy lock does not
// serialise every client. A client's ClientID always maps to the same shard,
// whichever proxy it arrives through.
package server

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/snowflake-go/snowflake/common/closegroup"
	"github.com/snowflake-go/snowflake/common/httplog"
	"github.com/snowflake-go/snowflake/common/turbotunnel"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxConns          = 50000
	DefaultPreambleTimeout   = 30 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultWriteTimeout      = 30 * time.Second
	DefaultORDialTimeout     = 30 * time.Second
	DefaultClientMapCapacity = 98304
)

// Config configures a Server. The zero value of every field but DialOR
// means its default.
type Config struct {
	// Logger receives the server's log. nil discards it.
	Logger *slog.Logger

	// DialOR connects one client stream to tor. clientAddr is the client's
	// address as "IP:1" (the port is a placeholder), or "" when the proxy
	// did not say. Required.
	DialOR func(ctx context.Context, clientAddr string) (net.Conn, error)

	// NumTurbotunnel is the number of independent KCP state machines that
	// sessions are sharded over. 0 means one per usable CPU
	// (runtime.GOMAXPROCS, which follows CPU affinity and quotas).
	NumTurbotunnel int

	// MaxConns bounds concurrent WebSocket connections; more are refused
	// with HTTP 503 before the upgrade. 0 means DefaultMaxConns.
	MaxConns int

	// PreambleTimeout is how long a new WebSocket may take to send the
	// token and ClientID. 0 means DefaultPreambleTimeout.
	PreambleTimeout time.Duration

	// IdleTimeout closes a WebSocket that delivers nothing for this long.
	// Live clients send smux keep-alives every 10 s. 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration

	// WriteTimeout closes a WebSocket whose write has been blocked this
	// long while nothing arrived from it either (a stalled proxy; see
	// writeWatch). 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration

	// ORDialTimeout bounds DialOR for one stream. 0 means
	// DefaultORDialTimeout.
	ORDialTimeout time.Duration

	// ClientMapCapacity is how many recent ClientID-to-address records are
	// kept. 0 means DefaultClientMapCapacity.
	ClientMapCapacity int

	// ClientQueueTimeout is how long the outgoing queue of a ClientID that
	// no WebSocket carries is kept. 0 means turbotunnel.ClientMapTimeout.
	ClientQueueTimeout time.Duration
}

// Validate reports whether the configuration is usable.
func (c Config) Validate() error {
	if c.DialOR == nil {
		return errors.New("server: config: DialOR is required")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"NumTurbotunnel", int64(c.NumTurbotunnel)},
		{"MaxConns", int64(c.MaxConns)},
		{"PreambleTimeout", int64(c.PreambleTimeout)},
		{"IdleTimeout", int64(c.IdleTimeout)},
		{"WriteTimeout", int64(c.WriteTimeout)},
		{"ORDialTimeout", int64(c.ORDialTimeout)},
		{"ClientMapCapacity", int64(c.ClientMapCapacity)},
		{"ClientQueueTimeout", int64(c.ClientQueueTimeout)},
	} {
		if f.v < 0 {
			return fmt.Errorf("server: config: %s is negative", f.name)
		}
	}
	return nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// withDefaults returns a copy of c with defaults applied.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.NumTurbotunnel = orDefault(c.NumTurbotunnel, runtime.GOMAXPROCS(0))
	c.MaxConns = orDefault(c.MaxConns, DefaultMaxConns)
	c.PreambleTimeout = orDefault(c.PreambleTimeout, DefaultPreambleTimeout)
	c.IdleTimeout = orDefault(c.IdleTimeout, DefaultIdleTimeout)
	c.WriteTimeout = orDefault(c.WriteTimeout, DefaultWriteTimeout)
	c.ORDialTimeout = orDefault(c.ORDialTimeout, DefaultORDialTimeout)
	c.ClientMapCapacity = orDefault(c.ClientMapCapacity, DefaultClientMapCapacity)
	c.ClientQueueTimeout = orDefault(c.ClientQueueTimeout, turbotunnel.ClientMapTimeout)
	return c
}

// Server is a running bridge server. It is an http.Handler that upgrades
// every request, on any path, to a WebSocket; [Server.Serve] runs it on a
// listener with suitable HTTP timeouts.
type Server struct {
	cfg    Config
	logger *slog.Logger
	shards []*shard
	seed   maphash.Seed
	addrs  *addrMap
	stats  *counters
	sem    chan struct{} // one token per open WebSocket
	// copyBuffers holds *[largeCopyBuffer]byte for streams in bulk transfer.
	copyBuffers sync.Pool
	// batchBuffers holds *[]byte of writeBatchSize capacity for writeLoop.
	batchBuffers sync.Pool

	ctx    context.Context // canceled by Close: ends every connection
	cancel context.CancelFunc

	// group counts every goroutine the server started and every
	// WebSocket it serves; Close stops it and waits.
	group closegroup.Group
}

// New starts a Server's KCP shards. Close releases them.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:    cfg,
		logger: cfg.Logger.With("component", "server"),
		seed:   maphash.MakeSeed(),
		addrs:  newAddrMap(cfg.ClientMapCapacity),
		stats:  &counters{},
		sem:    make(chan struct{}, cfg.MaxConns),
		ctx:    ctx,
		cancel: cancel,
	}
	s.copyBuffers.New = func() any { return new([largeCopyBuffer]byte) }
	s.batchBuffers.New = func() any {
		b := make([]byte, 0, writeBatchSize)
		return &b
	}
	for i := range cfg.NumTurbotunnel {
		sh, err := newShard(s, i)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.shards = append(s.shards, sh)
	}
	return s, nil
}

// shardFor maps a ClientID to its shard; the same ClientID always gets the
// same shard, which is what lets a session continue through a new proxy.
func (s *Server) shardFor(id turbotunnel.ClientID) *shard {
	if len(s.shards) == 1 {
		return s.shards[0]
	}
	return s.shards[maphash.Comparable(s.seed, id)%uint64(len(s.shards))]
}

// NumShards returns the number of KCP state machines.
func (s *Server) NumShards() int { return len(s.shards) }

// Serve accepts HTTP connections on ln and serves WebSockets until ctx ends
// or Close is called; then it closes ln and returns nil. Wrap ln with
// tls.NewListener for TLS. Any other error from the HTTP server is returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler: s,
		// Only the upgrade request is HTTP; this bounds a client that
		// dribbles its headers. No ReadTimeout/WriteTimeout: their
		// deadlines would stay on the hijacked connection and cut every
		// WebSocket after that time. WebSocket traffic is governed by the
		// Server's own preamble, idle and write timeouts instead.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          httplog.ErrorLog(s.logger.Handler()),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("server: serve: %w", err)
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
	// Hijacked WebSocket connections are not tracked by http.Server; they
	// end through s.ctx (Close) or by themselves.
	hs.Close()
	<-errc
	return nil
}

// Close ends every connection and session, stops the shards and waits for
// all the server's goroutines. It is idempotent.
func (s *Server) Close() error {
	s.group.Stop()
	s.cancel()
	for _, sh := range s.shards {
		sh.close()
	}
	s.group.Wait()
	return nil
}
