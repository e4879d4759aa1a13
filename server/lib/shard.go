package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/snowflake-go/snowflake/common/turbotunnel"
)

// shardAddr is the local address of a shard's packet conn.
type shardAddr int

func (a shardAddr) Network() string { return "turbotunnel" }
func (a shardAddr) String() string  { return "shard-" + strconv.Itoa(int(a)) }

// shard is one KCP state machine with its packet conn. Each ClientID lives
// on exactly one shard.
type shard struct {
	s     *Server
	pconn *turbotunnel.QueuePacketConn
	ln    *turbotunnel.Listener
	once  sync.Once
}

func newShard(s *Server, i int) (*shard, error) {
	pconn := turbotunnel.NewQueuePacketConn(shardAddr(i), s.cfg.ClientQueueTimeout)
	ln, err := turbotunnel.Listen(pconn)
	if err != nil {
		pconn.Close()
		return nil, fmt.Errorf("server: shard %d: %w", i, err)
	}
	sh := &shard{s: s, pconn: pconn, ln: ln}
	if !s.group.Go(sh.acceptSessions) {
		sh.close()
		return nil, fmt.Errorf("server: shard %d: server closed", i)
	}
	return sh, nil
}

// close stops the listener and the packet conn; the accept loop and the
// sessions then end. Idempotent.
func (sh *shard) close() {
	sh.once.Do(func() {
		sh.ln.Close()
		// The listener does not own the packet conn; closing it ends
		// KCP's read loop.
		sh.pconn.Close()
	})
}

func (sh *shard) acceptSessions() {
	for {
		conn, err := sh.ln.AcceptKCP()
		if err != nil {
			return // listener closed
		}
		if !sh.s.group.Go(func() { sh.handleSession(conn) }) {
			conn.Close()
			return
		}
	}
}

// handleSession runs smux over one client's KCP session and hands each
// stream to tor.
func (sh *shard) handleSession(conn *kcp.UDPSession) {
	s := sh.s
	defer conn.Close()
	id, _ := conn.RemoteAddr().(turbotunnel.ClientID)
	// The address is looked up once, when the session starts, as upstream
	// does; a later proxy's client_ip does not move an open session.
	addr := s.addrs.get(id)
	mux, err := sh.ln.Session(conn)
	if err != nil {
		s.logger.Warn("session setup failed", "clientid", id, "err", err)
		return
	}
	defer mux.Close()
	stop := context.AfterFunc(s.ctx, func() { mux.Close() })
	defer stop()
	s.stats.sessionsTotal.Add(1)
	s.stats.sessionsActive.Add(1)
	defer s.stats.sessionsActive.Add(-1)
	s.logger.Debug("session started", "clientid", id)
	streams := &sessionStreams{closeSession: func() { mux.Close() }}
	defer streams.stop()
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			s.logger.Debug("session ended", "clientid", id, "reason", err)
			return
		}
		streams.opened()
		if !s.group.Go(func() { streams.closed(s.handleStream(st, id, addr)) }) {
			st.Close()
			return
		}
	}
}

// clientDoneLinger is how long a session outlives the last of its streams
// when the client closed it.
//
// Clients (ours, and upstream's 2.5 to 2.13) open one stream per session
// and close the session with it, so a session whose client has closed
// every stream will carry nothing more. Left to itself it would live until
// smux's keep-alive timeout (minutes), and if the client has gone, KCP
// would resend its unacknowledged window (up to a stream window, 1 MiB)
// every retransmission timeout, into a queue no proxy drains. The linger
// keeps a client that opens its next stream right after closing one
// working.
const clientDoneLinger = 2 * time.Second

// sessionStreams counts a session's open streams and closes the session
// once the client has closed them all and opened none for clientDoneLinger.
type sessionStreams struct {
	closeSession func()

	mu     sync.Mutex
	active int
	linger *time.Timer // running while the client has closed every stream
}

func (ss *sessionStreams) opened() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.active++
	if ss.linger != nil {
		ss.linger.Stop()
		ss.linger = nil
	}
}

// closed records the end of a stream; byClient tells whether the client
// ended it.
func (ss *sessionStreams) closed(byClient bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.active--
	if ss.active == 0 && byClient && ss.linger == nil {
		ss.linger = time.AfterFunc(clientDoneLinger, ss.closeSession)
	}
}

// stop cancels a pending close once the session has ended anyway.
func (ss *sessionStreams) stop() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.linger != nil {
		ss.linger.Stop()
	}
}

// handleStream connects one smux stream to tor and copies both ways until
// either side ends; then both are closed. It reports whether the client
// ended the stream (smux delivered its FIN) rather than tor or the server.
func (s *Server) handleStream(st *smux.Stream, id turbotunnel.ClientID, addr string) (byClient bool) {
	defer st.Close()
	s.stats.streamsTotal.Add(1)
	s.stats.streamsActive.Add(1)
	defer s.stats.streamsActive.Add(-1)

	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ORDialTimeout)
	or, err := s.cfg.DialOR(ctx, addr)
	cancel()
	if err != nil {
		s.stats.errors[errORDial].Add(1)
		s.logger.Warn("cannot connect stream to tor", "clientid", id, "err", err)
		return
	}
	defer or.Close()
	stop := context.AfterFunc(s.ctx, func() { or.Close(); st.Close() })
	defer stop()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A nil error is a clean end of the stream: the client's FIN. A
		// stream closed here first fails with io.ErrClosedPipe instead.
		_, err := io.Copy(countingWriter{or, &s.stats.bytesUp}, st)
		byClient = err == nil
		// Tor sees the client's end; closing both also ends the copy
		// below, since a Tor connection is not half-closed in practice.
		or.Close()
		st.Close()
	}()
	s.copyFromOR(countingWriter{st, &s.stats.bytesDown}, or)
	or.Close()
	st.Close()
	wg.Wait()
	return byClient
}

const (
	// smallCopyBuffer is what an idle stream holds while waiting for tor.
	smallCopyBuffer = 2048
	// largeCopyBuffer is borrowed from a pool while tor sends in bulk.
	largeCopyBuffer = 32 * 1024
)

// copyFromOR copies from tor to the client. An idle stream blocks in Read
// with only a small buffer; a large pooled buffer is borrowed only while
// reads keep filling the small one. With thousands of mostly idle streams
// this saves 30 KB each over io.Copy's buffer.
func (s *Server) copyFromOR(dst io.Writer, src io.Reader) {
	small := make([]byte, smallCopyBuffer)
	for {
		n, err := src.Read(small)
		if n > 0 {
			if _, werr := dst.Write(small[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
		if n < len(small) {
			continue
		}
		// Bulk transfer: read with the large buffer until a read comes
		// back short, which means tor has paused.
		bp := s.copyBuffers.Get().(*[largeCopyBuffer]byte)
		for n == len(small) || n == largeCopyBuffer {
			n, err = src.Read(bp[:])
			if n > 0 {
				if _, werr := dst.Write(bp[:n]); werr != nil {
					s.copyBuffers.Put(bp)
					return
				}
			}
			if err != nil {
				s.copyBuffers.Put(bp)
				return
			}
		}
		s.copyBuffers.Put(bp)
	}
}

// countingWriter adds the bytes written through it to a counter.
type countingWriter struct {
	w io.Writer
	n interface{ Add(int64) int64 }
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

var _ net.Addr = shardAddr(0)
