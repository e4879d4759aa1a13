package h2client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Errors reported by connections and streams.
var (
	// ErrBodyTooLarge means a response body exceeded the configured limit;
	// the stream was reset.
	ErrBodyTooLarge = errors.New("h2client: response body too large")
	// ErrConnClosed means the connection was closed (by Close, by the
	// peer, or after a connection error) before the request finished.
	ErrConnClosed = errors.New("h2client: connection closed")
	// ErrHung means the server did not answer a health-check PING in time.
	ErrHung = errors.New("h2client: connection hung (no answer to PING)")
)

// errNotProcessed marks failures that happened before the server
// processed the request (refused stream, a stream above a GOAWAY's last
// ID, a connection that was already shutting down): the request can be
// sent again on another connection.
var errNotProcessed = errors.New("request not processed by the server")

// StreamError is a stream reset by the server (RST_STREAM) or by this
// client because the server broke the protocol on it.
type StreamError struct {
	Code   http2.ErrCode
	Remote bool // reset by the server
}

func (e *StreamError) Error() string {
	who := "client"
	if e.Remote {
		who = "server"
	}
	return fmt.Sprintf("h2client: stream reset by %s: %v", who, e.Code)
}

// GoAwayError is a GOAWAY from the server that ended a request.
type GoAwayError struct {
	LastStreamID uint32
	Code         http2.ErrCode
	Debug        string
}

func (e *GoAwayError) Error() string {
	return fmt.Sprintf("h2client: server sent GOAWAY (last stream %d, %v, %q)", e.LastStreamID, e.Code, e.Debug)
}

// ConnError is an HTTP/2 protocol error on the connection.
type ConnError struct {
	Code   http2.ErrCode
	Reason string
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("h2client: connection error %v: %s", e.Code, e.Reason)
}

// Config tunes a connection. The zero value is usable.
type Config struct {
	// MaxBodyBytes caps each response body, as received and, when this
	// package undoes a content coding, as decoded; more fails the read
	// with ErrBodyTooLarge (and resets the stream if received). 0 means
	// 1 MiB.
	MaxBodyBytes int64
	// IdleTimeout closes the connection when no request has been open for
	// this long. 0 means 5 minutes.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the connection. 0 means 15 s.
	WriteTimeout time.Duration
	// PingAfter is how long the connection may have received nothing
	// before a new request is preceded by a health-check PING, and
	// PingTimeout how long that PING may go unanswered before the
	// connection is declared hung. Chromium uses 10 s for both. 0 means
	// 10 s.
	PingAfter   time.Duration
	PingTimeout time.Duration
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.MaxBodyBytes <= 0 {
		d.MaxBodyBytes = 1 << 20
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = 5 * time.Minute
	}
	if d.WriteTimeout <= 0 {
		d.WriteTimeout = 15 * time.Second
	}
	if d.PingAfter <= 0 {
		d.PingAfter = 10 * time.Second
	}
	if d.PingTimeout <= 0 {
		d.PingTimeout = 10 * time.Second
	}
	return d
}

// Conn is one HTTP/2 client connection over an established (TLS) net.Conn
// that negotiated h2. It is safe for concurrent use; a reader goroutine,
// started by NewConn and awaited by Close, handles everything the server
// sends.
type Conn struct {
	nc  net.Conn
	cfg Config

	wmu  sync.Mutex // serialises writes; guards bw, fr's writer, henc, hbuf
	bw   *bufio.Writer
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer

	mu           sync.Mutex // guards the fields below
	streams      map[uint32]*stream
	nextID       uint32
	lastOpened   uint32 // newest stream still open, the next one's dependency
	maxStreams   uint32 // server's SETTINGS_MAX_CONCURRENT_STREAMS
	peerWindow   int32  // server's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame    uint32 // server's SETTINGS_MAX_FRAME_SIZE
	peerHdrList  uint32 // server's SETTINGS_MAX_HEADER_LIST_SIZE (0: none)
	sendWindow   int64  // connection-level send window
	recvUnacked  int64  // consumed connection-level bytes not yet re-granted
	recvWindow   int64  // what the server may still send on the connection
	goAway       *GoAwayError
	closing      bool // no new streams: GOAWAY received or Close called
	err          error
	lastRead     time.Time
	idleSince    time.Time
	pingSent     time.Time // zero when no health-check PING is outstanding
	nextPing     uint64
	pending      []func() error // frames to write once c.mu is released
	windowChange chan struct{}  // closed and replaced when send windows grow
	done         chan struct{}  // closed when the reader has exited

	closeOnce sync.Once
}

// stream is the state of one request.
type stream struct {
	id  uint32
	req *http.Request

	// Guarded by Conn.mu:
	sendWindow  int64
	recvWindow  int64 // what the server may still send on this stream
	recvUnacked int64
	received    int64 // body bytes received so far
	declaredLen int64 // the response's content-length, -1 if none
	buf         bytes.Buffer
	resp        *http.Response // the caller's once headers arrived: not read here after
	trailer     http.Header
	ended       bool  // server's END_STREAM seen
	err         error // terminal error for readers
	sentEnd     bool  // our END_STREAM sent
	stopSending bool  // the server answered in full and wants no more body
	wake        chan struct{}
	gotHeaders  chan struct{} // closed when resp is set or err is
}

// headersArrived releases RoundTrip's wait for the response headers
// (they arrived, or the stream failed); the caller holds Conn.mu.
func (s *stream) headersArrived() {
	select {
	case <-s.gotHeaders:
	default:
		close(s.gotHeaders)
	}
}

// notify wakes a waiting reader; the caller holds Conn.mu.
func (s *stream) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// NewConn starts an HTTP/2 connection over nc (whose TLS handshake has
// negotiated h2): it writes Chromium's connection preface and starts the
// reader. Close releases it.
func NewConn(nc net.Conn, cfg Config) (*Conn, error) {
	c := &Conn{
		nc:           nc,
		cfg:          cfg.withDefaults(),
		streams:      map[uint32]*stream{},
		nextID:       1,
		maxStreams:   100, // until the server says otherwise, as Chromium assumes
		peerWindow:   initialWindow,
		peerFrame:    defaultFrameSize,
		sendWindow:   initialWindow,
		recvWindow:   connWindow,
		nextPing:     1,
		lastRead:     time.Now(),
		idleSince:    time.Now(),
		windowChange: make(chan struct{}),
		done:         make(chan struct{}),
	}
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	c.fr = http2.NewFramer(c.bw, bufio.NewReaderSize(nc, 16<<10))
	c.fr.SetMaxReadFrameSize(defaultFrameSize)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(headerTableSize, nil)
	c.fr.MaxHeaderListSize = maxHeaderListSize
	c.henc = hpack.NewEncoder(&c.hbuf)

	err := c.write(func() error {
		if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
			return err
		}
		if err := c.fr.WriteSettings(chromiumSettings...); err != nil {
			return err
		}
		return c.fr.WriteWindowUpdate(0, connWindowUpdate)
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("h2client: preface: %w", err)
	}
	c.setDeadline()
	go c.readLoop()
	return c, nil
}

// write runs fn, which writes frames, under the write lock with a write
// deadline, and flushes. A failed write breaks the connection.
func (c *Conn) write(fn func() error) error {
	err := c.writeFrames(fn)
	if err != nil {
		c.fail(fmt.Errorf("h2client: write: %w", err))
	}
	return err
}

// writeFrames is write without failing the connection on error.
func (c *Conn) writeFrames(fn func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	err := fn()
	if err == nil {
		err = c.bw.Flush()
	}
	return err
}

// drainTimeout bounds how long a request whose HEADERS could not be
// written waits for the reader to take in what the server sent before
// the connection broke.
const drainTimeout = time.Second

// headersNotWritten ends the connection after the HEADERS of s failed to
// go out, and returns the request's error. A server that refuses a
// connection (an HTTP/2 server offered a TLS 1.2 cipher it forbids, for
// one) sends GOAWAY and closes at once, so writing the request fails; but
// a GOAWAY whose last stream is below s means the server processed
// nothing of it (RFC 9113 §6.8), and the request can be sent again on
// another connection. The GOAWAY is in the reader's hands, so the reader
// is given the chance to finish before the connection is closed.
func (c *Conn) headersNotWritten(s *stream, werr error) error {
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-s.gotHeaders:
	case <-t.C:
	}
	c.mu.Lock()
	serr := s.err
	c.mu.Unlock()
	c.fail(fmt.Errorf("h2client: write: %w", werr))
	c.closeStream(s, nil)
	if errors.Is(serr, errNotProcessed) {
		return serr
	}
	return c.connErr(werr)
}

// Close closes the connection, failing open requests, and waits for the
// reader. It is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		clean := c.err == nil
		c.closing = true
		c.mu.Unlock()
		if clean {
			// A browser says goodbye before closing a session; a short
			// deadline keeps an unresponsive peer from holding Close,
			// set before taking the lock so that it also cuts short a
			// write in progress.
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			c.wmu.Lock()
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			if c.fr.WriteGoAway(0, http2.ErrCodeNo, nil) == nil {
				c.bw.Flush()
			}
			c.wmu.Unlock()
		}
		c.fail(ErrConnClosed)
	})
	<-c.done
	return nil
}

// fail records err as the connection's terminal error, closes the
// network connection and fails every stream. It is safe to call more than
// once; the first error wins.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	err = c.err
	c.closing = true
	streams := c.streams
	c.streams = map[uint32]*stream{}
	for _, s := range streams {
		c.endStreamLocked(s, err)
	}
	close(c.windowChange)
	c.windowChange = make(chan struct{})
	c.mu.Unlock()
	c.nc.Close()
}

// endStreamLocked fails s with err unless it already ended. The caller
// holds c.mu and removes s from c.streams.
func (c *Conn) endStreamLocked(s *stream, err error) {
	if s.err == nil {
		s.err = err
	}
	s.headersArrived()
	s.notify()
}

// removeStreamLocked forgets a finished stream; the caller holds c.mu.
func (c *Conn) removeStreamLocked(s *stream) {
	if c.streams[s.id] != s {
		return
	}
	delete(c.streams, s.id)
	if c.lastOpened == s.id {
		c.lastOpened = 0
		for id := range c.streams {
			c.lastOpened = max(c.lastOpened, id)
		}
	}
	if len(c.streams) == 0 {
		c.idleSince = time.Now()
		c.setDeadlineLocked()
	}
}

// setDeadline arms the read deadline that implements the idle timeout and
// the PING health check.
func (c *Conn) setDeadline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setDeadlineLocked()
}

func (c *Conn) setDeadlineLocked() {
	var d time.Time
	if len(c.streams) == 0 {
		d = c.idleSince.Add(c.cfg.IdleTimeout)
		if c.goAway != nil {
			// The server is done with the connection and nothing is
			// left on it: end it now, as if idle.
			d = time.Now()
		}
	}
	if !c.pingSent.IsZero() {
		p := c.pingSent.Add(c.cfg.PingTimeout)
		if d.IsZero() || p.Before(d) {
			d = p
		}
	}
	c.nc.SetReadDeadline(d)
}

// CanTakeRequest reports whether a new request may be started on c.
func (c *Conn) CanTakeRequest() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.canTakeLocked()
}

func (c *Conn) canTakeLocked() bool {
	if len(c.streams) == 0 && time.Since(c.idleSince) >= c.cfg.IdleTimeout {
		// About to be closed by its idle deadline.
		return false
	}
	return !c.closing && c.err == nil && uint32(len(c.streams)) < c.maxStreams && c.nextID < 1<<31-2
}

// Idle reports whether c has no open requests.
func (c *Conn) Idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams) == 0
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// RoundTrip sends req on c and returns the response once its headers have
// arrived; the body streams in afterwards. req.Context() bounds the
// exchange, body reads included. An error for which [IsRetryable] is true
// means the server did not process the request.
func (c *Conn) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	body, bodyLen, err := requestBody(req)
	if err != nil {
		return nil, err
	}
	if body != nil {
		defer body.Close()
	}
	fields, addedEncoding, err := requestHeaders(req, bodyLen)
	if err != nil {
		return nil, err
	}
	authority, err := authorityOf(req)
	if err != nil {
		return nil, err
	}
	path := req.URL.RequestURI()
	if path == "" || path[0] != '/' {
		if req.Method != http.MethodOptions || path != "*" {
			return nil, fmt.Errorf("h2client: request path %q is not absolute", path)
		}
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !validMethod(method) {
		return nil, fmt.Errorf("h2client: invalid method %q", method)
	}

	// Chromium's pseudo-header order.
	all := append([][2]string{
		{":method", method}, {":authority", authority}, {":scheme", "https"}, {":path", path},
	}, fields...)

	// Checked before anything is encoded: the HPACK encoder's table must
	// not remember headers that were never sent.
	var size int
	for _, f := range all {
		size += len(f[0]) + len(f[1]) + 32
	}
	c.mu.Lock()
	limit := c.peerHdrList
	c.mu.Unlock()
	if limit != 0 && size > int(limit) {
		return nil, fmt.Errorf("h2client: request headers (%d bytes) over the server's limit of %d", size, limit)
	}

	s, ping, err := c.openStream(req)
	if err != nil {
		return nil, err
	}
	endStream := body == nil
	err = c.writeFrames(func() error {
		if err := c.writeHeaders(s, all, endStream); err != nil {
			return err
		}
		if ping != 0 {
			// Chromium writes its check right after the HEADERS and
			// before the body (seen on a connection idle for 12 s).
			var data [8]byte
			binary.BigEndian.PutUint64(data[:], ping)
			return c.fr.WritePing(false, data)
		}
		return nil
	})
	if err != nil {
		return nil, c.headersNotWritten(s, err)
	}
	if body != nil {
		if err := c.writeBody(ctx, s, body, bodyLen); err != nil {
			c.resetStream(s, http2.ErrCodeCancel, err)
			return nil, err
		}
	}

	select {
	case <-s.gotHeaders:
	case <-ctx.Done():
		c.resetStream(s, http2.ErrCodeCancel, ctx.Err())
		// Headers and data may have come meanwhile, and no body reader
		// will give their bytes back. The stream is out of the map now,
		// so nothing more is buffered in it.
		c.mu.Lock()
		c.discardBufferedLocked(s)
		c.mu.Unlock()
		c.flushPending()
		return nil, ctx.Err()
	}
	c.mu.Lock()
	resp, serr := s.resp, s.err
	c.mu.Unlock()
	if resp == nil {
		if serr == nil {
			serr = ErrConnClosed
		}
		return nil, serr
	}
	resp.Request = req
	resp.Body = &bodyReader{c: c, s: s, ctx: ctx}
	if resp.ContentLength == 0 {
		c.mu.Lock()
		ended := s.ended
		c.mu.Unlock()
		if ended {
			resp.Body.Close()
			resp.Body = http.NoBody
		}
	}
	if addedEncoding {
		if err := decodeContent(resp, c.cfg.MaxBodyBytes); err != nil {
			resp.Body.Close()
			return nil, err
		}
	}
	return resp, nil
}

// openStream allocates the next stream; ping is the ID of a health-check
// PING to send first, or 0.
func (c *Conn) openStream(req *http.Request) (*stream, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errNotProcessed, c.err)
	}
	if !c.canTakeLocked() {
		return nil, 0, fmt.Errorf("h2client: connection cannot take more requests: %w", errNotProcessed)
	}
	s := &stream{
		id:         c.nextID,
		req:        req,
		sendWindow: int64(c.peerWindow),
		recvWindow: streamWindow,
		wake:       make(chan struct{}, 1),
		gotHeaders: make(chan struct{}),
	}
	c.nextID += 2
	c.streams[s.id] = s
	var ping uint64
	// Chromium checks a connection that has been quiet for a while before
	// trusting a request to it.
	if c.pingSent.IsZero() && time.Since(c.lastRead) > c.cfg.PingAfter {
		ping = c.nextPing
		c.nextPing += 2
		c.pingSent = time.Now()
	}
	c.setDeadlineLocked()
	return s, ping, nil
}

// writeHeaders encodes and writes the HEADERS (and CONTINUATION) frames of
// s, with Chromium's priority: exclusive dependency on the newest open
// stream, weight 220. The caller holds wmu.
func (c *Conn) writeHeaders(s *stream, fields [][2]string, endStream bool) error {
	c.mu.Lock()
	dep := c.lastOpened
	c.lastOpened = s.id
	frameSize := c.peerFrame
	c.mu.Unlock()

	c.hbuf.Reset()
	for _, f := range fields {
		c.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := c.hbuf.Bytes()
	first := block
	if uint32(len(first)) > frameSize {
		first = block[:frameSize]
	}
	rest := block[len(first):]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID:      s.id,
		BlockFragment: first,
		EndStream:     endStream,
		EndHeaders:    len(rest) == 0,
		Priority:      http2.PriorityParam{StreamDep: dep, Exclusive: true, Weight: fetchWeight - 1},
	})
	for err == nil && len(rest) > 0 {
		chunk := rest
		if uint32(len(chunk)) > frameSize {
			chunk = rest[:frameSize]
		}
		rest = rest[len(chunk):]
		err = c.fr.WriteContinuation(s.id, len(rest) == 0, chunk)
	}
	if err == nil && endStream {
		c.mu.Lock()
		s.sentEnd = true
		c.mu.Unlock()
	}
	return err
}

// errStopSending ends an upload the server no longer wants.
var errStopSending = errors.New("server stopped the request body")

// writeBody sends the request body in DATA frames within the server's
// flow-control windows; the last frame carries END_STREAM, as Chromium's
// does.
func (c *Conn) writeBody(ctx context.Context, s *stream, body io.Reader, bodyLen int64) error {
	// Two buffers of up to a frame: the next one is read ahead so that
	// the last DATA frame can carry END_STREAM. A body of known length
	// needs no more than its size (a poll is a few hundred bytes).
	size := int64(defaultFrameSize)
	if bodyLen > 0 && bodyLen < size {
		size = bodyLen
	}
	bufs := [2][]byte{make([]byte, size), make([]byte, size)}
	fill := func(b []byte) ([]byte, bool, error) {
		n, err := io.ReadFull(body, b)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return b[:n], true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("h2client: read request body: %w", err)
		}
		return b[:n], false, nil
	}
	cur, eof, err := fill(bufs[0])
	if err != nil {
		return err
	}
	for which := 1; ; which = 1 - which {
		var next []byte
		if !eof {
			if next, eof, err = fill(bufs[which]); err != nil {
				return err
			}
		}
		last := eof && len(next) == 0
		for {
			n, err := c.awaitWindow(ctx, s, len(cur))
			if err == errStopSending {
				return nil
			}
			if err != nil {
				return err
			}
			chunk := cur[:n]
			end := last && n == len(cur)
			if err := c.write(func() error { return c.fr.WriteData(s.id, end, chunk) }); err != nil {
				return c.connErr(err)
			}
			cur = cur[n:]
			if end {
				c.mu.Lock()
				s.sentEnd = true
				if s.ended {
					c.removeStreamLocked(s)
				}
				c.mu.Unlock()
				return nil
			}
			if len(cur) == 0 {
				break
			}
		}
		cur = next
	}
}

// awaitWindow waits until s and the connection may send at least one byte
// and takes up to want bytes (and at most one frame) of both windows. An
// empty frame (want 0) needs no window.
func (c *Conn) awaitWindow(ctx context.Context, s *stream, want int) (int, error) {
	for {
		c.mu.Lock()
		if s.err != nil {
			err := s.err
			c.mu.Unlock()
			return 0, err
		}
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return 0, err
		}
		if s.stopSending {
			c.mu.Unlock()
			return 0, errStopSending
		}
		if want == 0 {
			// An empty frame takes no window. With a send window made
			// negative by a smaller SETTINGS_INITIAL_WINDOW_SIZE, the
			// min below would be negative and grow the windows.
			c.mu.Unlock()
			return 0, nil
		}
		n := min(int64(want), s.sendWindow, c.sendWindow, int64(c.peerFrame))
		if n > 0 {
			s.sendWindow -= n
			c.sendWindow -= n
			c.mu.Unlock()
			return int(n), nil
		}
		ch := c.windowChange
		c.mu.Unlock()
		select {
		case <-ch:
		case <-s.wake:
			// A reset or error on the stream; loop to see it. The
			// wake-up is not the reader's, since no one reads a body
			// before the headers.
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// resetStream sends RST_STREAM for s (unless it has ended in both
// directions) and fails it with err.
func (c *Conn) resetStream(s *stream, code http2.ErrCode, err error) {
	c.mu.Lock()
	_, open := c.streams[s.id]
	needRST := open && !(s.ended && s.sentEnd)
	c.endStreamLocked(s, err)
	c.removeStreamLocked(s)
	c.mu.Unlock()
	if needRST {
		c.write(func() error { return c.fr.WriteRSTStream(s.id, code) })
	}
}

// closeStream forgets s after a finished or failed exchange.
func (c *Conn) closeStream(s *stream, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.endStreamLocked(s, err)
	}
	c.removeStreamLocked(s)
}

// connErr returns the connection's terminal error if it has one, else err.
func (c *Conn) connErr(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return err
}

// requestBody returns req's body (nil for none) and its length, -1 if
// unknown.
func requestBody(req *http.Request) (io.ReadCloser, int64, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, 0, nil
	}
	if req.ContentLength == 0 {
		// net/http's convention: 0 with a body means unknown length.
		// Peek one byte to tell an empty body from one of unknown size.
		var one [1]byte
		n, err := io.ReadFull(req.Body, one[:])
		if n == 0 {
			req.Body.Close()
			if err != nil && err != io.EOF {
				return nil, 0, fmt.Errorf("h2client: read request body: %w", err)
			}
			return nil, 0, nil
		}
		return readCloser{io.MultiReader(bytes.NewReader(one[:]), req.Body), req.Body}, -1, nil
	}
	return req.Body, req.ContentLength, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// authorityOf returns the :authority of req: its Host (the real
// destination when domain fronting) or its URL's host, without the
// default port, as Chromium writes it.
func authorityOf(req *http.Request) (string, error) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if host == "" {
		return "", errors.New("h2client: request has no host")
	}
	if h, port, err := net.SplitHostPort(host); err == nil && port == "443" {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	if !httpguts.ValidHostHeader(host) {
		return "", fmt.Errorf("h2client: invalid host %q", host)
	}
	return host, nil
}

func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return m != ""
}

func validHeaderName(n string) bool   { return httpguts.ValidHeaderFieldName(n) }
func validHeaderValue(v string) bool  { return httpguts.ValidHeaderFieldValue(v) }
func sortStrings(s []string)          { slices.Sort(s) }
func itoa(n int64) string             { return strconv.FormatInt(n, 10) }
func errInvalidHeader(k string) error { return fmt.Errorf("h2client: invalid request header %q", k) }

// IsRetryable reports whether err means the request was not processed by
// the server and may be sent again on another connection.
func IsRetryable(err error) bool { return errors.Is(err, errNotProcessed) }
