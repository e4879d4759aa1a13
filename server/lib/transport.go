package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/coder/websocket"

	"github.com/snowflake-go/snowflake/common/encapsulation"
	"github.com/snowflake-go/snowflake/common/turbotunnel"
	"github.com/snowflake-go/snowflake/common/websocketconn"
)

const (
	// readBufferSize is the bufio size on each WebSocket: it makes prefix
	// parsing cheap; the WebSocket library buffers the socket itself, so
	// this can stay small for thousands of idle connections.
	readBufferSize = 2048
	// packetBufferSize is the buffer each data chunk is read into. Upstream
	// servers use 2048; KCP packets are at most turbotunnel.MTU.
	packetBufferSize = 2048
	// writeBatchSize bounds one downstream WebSocket message. Browser
	// proxies forward each message as one data-channel message, and
	// Debian's 2.5.1 client reads those into a 65535-byte buffer, so it
	// stays below that. 32 KiB rather than 8 cut the server's WebSocket
	// writes per byte to a third (each message is one write plus one for
	// what exceeds the library's 4 KiB buffer), about 12% of its CPU per
	// byte. 60 KiB rather than 32 is for many clients sharing a proxy:
	// what the server sends at once, the proxy forwards at once, and each
	// client then wakes for more data at a time. With 50 clients on one
	// proxy (go run ./bench -clients 50) the aggregate was 41.9 against
	// 38.6 MB/s on average over 11 alternating pairs of runs, larger in 7;
	// a modest gain on a machine whose runs vary by ±15%. With 10 clients,
	// and for a single download, no change showed (eight and five pairs).
	writeBatchSize = 61440
	// maxRequestBody bounds what is read from an upgrade request's body
	// (upgrades have none).
	maxRequestBody = 4096
)

// clientAddr turns the proxy's client_ip query parameter into the address
// tor gets in USERADDR: "IP:1", or "" when absent or not a usable IP.
// Headers such as X-Forwarded-For are deliberately ignored: only the proxy
// knows the client's address, and it reports it in the URL.
func clientAddr(u *url.URL) string {
	ip, err := netip.ParseAddr(u.Query().Get("client_ip"))
	if err != nil || ip.IsUnspecified() {
		return ""
	}
	return netip.AddrPortFrom(ip.WithZone("").Unmap(), 1).String()
}

// ServeHTTP upgrades the request, on any path, to a WebSocket and carries
// its turbotunnel traffic until either side ends it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	select {
	case s.sem <- struct{}{}:
	default:
		s.stats.wsRejected.Add(1)
		abandonBody(w, r)
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	defer func() { <-s.sem }()
	if !s.group.Enter() {
		abandonBody(w, r)
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.group.Leave()

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// Proxies run in browsers on any origin.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		s.stats.errors[errUpgrade].Add(1)
		s.logger.Debug("websocket upgrade failed", "err", err)
		abandonBody(w, r)
		return // Accept has written the HTTP error
	}
	s.stats.wsTotal.Add(1)
	s.stats.wsActive.Add(1)
	defer s.stats.wsActive.Add(-1)
	conn := websocketconn.NewWithAddrs(ws, websocketconn.Addr{}, websocketconn.Addr{})
	err = s.carry(conn, clientAddr(r.URL))
	switch {
	case err == nil:
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		s.logger.Debug("websocket closed", "reason", err)
	default:
		s.logger.Info("websocket closed", "reason", err)
	}
}

// abandonBody makes a request that is not upgraded give up on its body, so
// that the answer goes out and the connection closes at once. Otherwise
// net/http, after the handler returns, reads up to 256 KiB of an unread body
// before it answers, with no deadline (Serve sets no ReadTimeout, which would
// cut WebSockets): a client that announces a body and sends none held a
// goroutine and a socket for as long as it liked, outside MaxConns.
func abandonBody(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 {
		return // nothing to read; the connection may be kept alive
	}
	// A past deadline fails the read at once; net/http then closes the
	// connection after the reply instead of reusing it.
	http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
}

// idleConn sets a fresh read deadline before every read, so a connection
// that stops delivering data is closed after the idle timeout, and tells
// the write watch of each read.
type idleConn struct {
	net.Conn
	idle  time.Duration
	watch *writeWatch
}

func (c idleConn) Read(p []byte) (int, error) {
	c.SetReadDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.watch.read()
	}
	return n, err
}

// carry reads the preamble from conn, then moves packets between conn and
// the client's shard until conn fails or the server closes. It always
// closes conn.
func (s *Server) carry(conn net.Conn, addr string) error {
	defer conn.Close()
	stop := context.AfterFunc(s.ctx, func() { conn.Close() })
	defer stop()

	conn.SetReadDeadline(time.Now().Add(s.cfg.PreambleTimeout))
	id, err := turbotunnel.ReadPreamble(conn)
	if err == io.EOF {
		// Proxies check that the server is reachable by opening and
		// closing a WebSocket: not an error.
		return nil
	}
	if err != nil {
		s.stats.errors[errPreamble].Add(1)
		return fmt.Errorf("preamble: %w", err)
	}
	s.addrs.set(id, addr)
	sh := s.shardFor(id)
	queue, release := sh.pconn.Attach(id)
	defer release()

	done := make(chan struct{})
	writeErr := make(chan error, 1)
	watch := newWriteWatch(conn, s.cfg.WriteTimeout)
	go func() {
		err := s.writeLoop(conn, watch, sh, queue, done)
		if err != nil {
			closeAfterRead(conn, done)
		}
		writeErr <- err
	}()
	err = s.readLoop(idleConn{conn, s.cfg.IdleTimeout, watch}, id, sh)
	close(done)
	conn.Close()
	werr := <-writeErr
	switch {
	case s.ctx.Err() != nil:
		return nil // server shutting down
	case werr != nil:
		return werr // the writer failed first; the reader ended after it
	default:
		return err
	}
}

// readAfterWriteError bounds how long the reader may go on once a write
// has failed.
//
// A write fails when the peer has reset the connection, which a client or
// proxy does when it closes its socket with data from the server unread.
// It closes right after writing its last packets, the FIN of its last
// stream among them, and they wait in the socket for the reader; closing
// the connection at the write error discarded them whenever the writer got
// there first (a loaded machine), and the session, not knowing its client
// had gone, lived on until its keep-alive timeout. A reset connection
// yields what it received and then fails, so the reader ends by itself;
// the bound is for a write that failed on a connection still readable.
const readAfterWriteError = 5 * time.Second

// closeAfterRead closes conn, after a failed write, once the reader has
// ended (done is closed) or readAfterWriteError has passed.
func closeAfterRead(conn io.Closer, done <-chan struct{}) {
	t := time.NewTimer(readAfterWriteError)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	conn.Close()
}

// readLoop feeds the client's packets to its shard.
func (s *Server) readLoop(conn net.Conn, id turbotunnel.ClientID, sh *shard) error {
	r := bufio.NewReaderSize(conn, readBufferSize)
	buf := make([]byte, packetBufferSize)
	for {
		n, err := encapsulation.ReadData(r, buf)
		var tooLong *encapsulation.ErrTooLong
		if errors.As(err, &tooLong) {
			// Not a packet we could have produced; the chunk has been
			// skipped and the stream is still aligned.
			s.stats.errors[errOversize].Add(1)
			continue
		}
		if err != nil {
			if errors.Is(err, encapsulation.ErrPrefixTooLong) {
				s.stats.errors[errFrame].Add(1)
			}
			return fmt.Errorf("read: %w", err)
		}
		if n > turbotunnel.MTU {
			// Upstream servers cut such packets to the MTU, which only
			// corrupts them; dropping is equivalent and cleaner.
			s.stats.errors[errOversize].Add(1)
			continue
		}
		if !sh.pconn.QueueIncomingWait(buf[:n], id, s.ctx.Done()) {
			s.stats.errors[errQueueFull].Add(1)
		}
	}
}

// writeLoop sends the client's outgoing packets, as many per WebSocket
// message as are queued, until done is closed or a write fails. The batch
// buffer is borrowed from a pool only while there is something to send, so
// an idle connection holds none. watch closes conn if a write stalls.
func (s *Server) writeLoop(conn net.Conn, watch *writeWatch, sh *shard, queue <-chan []byte, done <-chan struct{}) error {
	gather := turbotunnel.NewGatherer(turbotunnel.AckHold)
	defer gather.Stop()
	for {
		var p []byte
		select {
		case <-done:
			return nil
		case p = <-queue:
		}
		bp := s.batchBuffers.Get().(*[]byte)
		batch := encapsulation.AppendPrefix((*bp)[:0], len(p), true)
		batch = append(batch, p...)
		gather.Begin(p)
		sh.pconn.Release(p)
		for len(batch) < writeBatchSize-turbotunnel.MTU-encapsulation.MaxPrefixLength {
			p, ok := gather.More(queue, done)
			if !ok {
				break
			}
			batch = encapsulation.AppendPrefix(batch, len(p), true)
			batch = append(batch, p...)
			sh.pconn.Release(p)
		}
		watch.begin()
		_, err := conn.Write(batch)
		stalled := watch.end()
		*bp = batch
		s.batchBuffers.Put(bp)
		if err != nil {
			if stalled {
				s.stats.errors[errWrite].Add(1)
				return fmt.Errorf("write: stalled: nothing written or read for %v: %w", s.cfg.WriteTimeout, err)
			}
			select {
			case <-done:
				return nil // the read side ended and closed conn under us
			default:
			}
			s.stats.errors[errWrite].Add(1)
			return fmt.Errorf("write: %w", err)
		}
	}
}
