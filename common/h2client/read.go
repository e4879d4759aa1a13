package h2client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/net/http2"
)

// readLoop handles every frame the server sends, until the connection
// fails or closes.
func (c *Conn) readLoop() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		var se http2.StreamError
		if errors.As(err, &se) {
			// The Framer stays in sync after a stream-level problem (a
			// zero window increment, an invalid response header): only
			// that stream is reset.
			c.mu.Lock()
			if s := c.streams[se.StreamID]; s != nil {
				c.resetLocked(s, se.Code, &StreamError{Code: se.Code})
			}
			c.mu.Unlock()
			c.flushPending()
			continue
		}
		if err != nil {
			c.readFailed(err)
			return
		}
		c.mu.Lock()
		c.lastRead = time.Now()
		c.mu.Unlock()
		err = c.handle(f)
		c.flushPending()
		if err != nil {
			c.connError(err)
			return
		}
	}
}

// readFailed turns a read error into the connection's terminal error,
// answering protocol errors with GOAWAY first.
func (c *Conn) readFailed(err error) {
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.connError(&ConnError{Code: http2.ErrCode(ce), Reason: fmt.Sprint(c.fr.ErrorDetail())})
		return
	}
	c.mu.Lock()
	hung := !c.pingSent.IsZero() && time.Since(c.pingSent) >= c.cfg.PingTimeout
	idle := len(c.streams) == 0
	c.mu.Unlock()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if hung {
			c.fail(ErrHung)
			return
		}
		if idle {
			c.goAwayAndFail(http2.ErrCodeNo, ErrConnClosed)
			return
		}
	}
	c.mu.Lock()
	goAway := c.goAway
	c.mu.Unlock()
	if goAway != nil {
		c.fail(fmt.Errorf("%w: %w", goAway, ErrConnClosed))
		return
	}
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("h2client: server closed the connection: %w", ErrConnClosed)
	} else {
		err = fmt.Errorf("h2client: read: %w", err)
	}
	// Like Chromium, which resends a request whose reused connection
	// broke before any of the answer arrived: the server most likely
	// closed an idle connection as the request went out. The first
	// request of a connection is not resent (a server that cannot
	// answer it would be asked again and again).
	c.mu.Lock()
	for _, s := range c.streams {
		if s.resp == nil && s.id > 1 && s.err == nil {
			s.err = fmt.Errorf("%w: %w", err, errNotProcessed)
		}
	}
	c.mu.Unlock()
	c.fail(err)
}

// connError ends the connection after a protocol error by the server.
func (c *Conn) connError(err error) {
	code := http2.ErrCodeProtocol
	var ce *ConnError
	if errors.As(err, &ce) {
		code = ce.Code
	}
	c.goAwayAndFail(code, err)
}

func (c *Conn) goAwayAndFail(code http2.ErrCode, err error) {
	c.wmu.Lock()
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	if c.fr.WriteGoAway(0, code, nil) == nil {
		c.bw.Flush()
	}
	c.wmu.Unlock()
	c.fail(err)
}

func protocolError(format string, args ...any) error {
	return &ConnError{Code: http2.ErrCodeProtocol, Reason: fmt.Sprintf(format, args...)}
}

// handle processes one frame; an error is a connection error.
func (c *Conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return c.handleSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			c.mu.Lock()
			if binary.BigEndian.Uint64(f.Data[:]) == c.nextPing-2 {
				c.pingSent = time.Time{}
				c.setDeadlineLocked()
			}
			c.mu.Unlock()
			return nil
		}
		c.write(func() error { return c.fr.WritePing(true, f.Data) })
		return nil
	case *http2.WindowUpdateFrame:
		return c.handleWindowUpdate(f)
	case *http2.GoAwayFrame:
		c.handleGoAway(f)
		return nil
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		if s := c.streams[f.StreamID]; s != nil {
			if f.ErrCode == http2.ErrCodeNo && s.ended {
				// A complete response before the whole request: the
				// server wants no more of the body (RFC 9113 §8.1),
				// and the response stands.
				s.stopSending = true
				s.notify()
				c.removeStreamLocked(s)
				c.mu.Unlock()
				return nil
			}
			var err error = &StreamError{Code: f.ErrCode, Remote: true}
			if f.ErrCode == http2.ErrCodeRefusedStream {
				err = fmt.Errorf("%w: %w", err, errNotProcessed)
			}
			c.endStreamLocked(s, err)
			c.removeStreamLocked(s)
		} else if f.StreamID >= c.nextID {
			c.mu.Unlock()
			return protocolError("RST_STREAM on idle stream %d", f.StreamID)
		}
		c.mu.Unlock()
		return nil
	case *http2.MetaHeadersFrame:
		return c.handleHeaders(f)
	case *http2.DataFrame:
		return c.handleData(f)
	case *http2.PushPromiseFrame:
		// SETTINGS_ENABLE_PUSH is 0.
		return protocolError("PUSH_PROMISE with push disabled")
	case *http2.PriorityFrame, *http2.UnknownFrame:
		// Ignored, as RFC 9113 requires for unknown types.
		return nil
	case *http2.ContinuationFrame:
		// The Framer joins CONTINUATION to its HEADERS; a stray one
		// would have been an error there already.
		return protocolError("unexpected CONTINUATION")
	}
	return nil
}

func (c *Conn) handleSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	var tableSize *uint32
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingHeaderTableSize:
			v := st.Val
			tableSize = &v
		case http2.SettingEnablePush:
			// Meaningless from a server; Valid checked 0 or 1.
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = st.Val
		case http2.SettingInitialWindowSize:
			delta := int64(st.Val) - int64(c.peerWindow)
			for _, s := range c.streams {
				if s.sendWindow+delta > 1<<31-1 {
					return &ConnError{Code: http2.ErrCodeFlowControl, Reason: "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window"}
				}
			}
			for _, s := range c.streams {
				s.sendWindow += delta
			}
			c.peerWindow = int32(st.Val)
		case http2.SettingMaxFrameSize:
			c.peerFrame = st.Val
		case http2.SettingMaxHeaderListSize:
			c.peerHdrList = st.Val
		}
		return nil
	})
	close(c.windowChange)
	c.windowChange = make(chan struct{})
	c.mu.Unlock()
	if err != nil {
		var ce *ConnError
		if errors.As(err, &ce) {
			return err
		}
		var h2ce http2.ConnectionError
		if errors.As(err, &h2ce) {
			return &ConnError{Code: http2.ErrCode(h2ce), Reason: "invalid setting"}
		}
		return protocolError("settings: %v", err)
	}
	return c.write(func() error {
		if tableSize != nil {
			// The encoder's table may shrink to the server's size; it
			// never grows past hpack's default 4096, as Chromium's
			// encoder does not either.
			c.henc.SetMaxDynamicTableSizeLimit(*tableSize)
		}
		return c.fr.WriteSettingsAck()
	})
}

func (c *Conn) handleWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		if c.sendWindow+int64(f.Increment) > 1<<31-1 {
			return &ConnError{Code: http2.ErrCodeFlowControl, Reason: "connection window over 2^31-1"}
		}
		c.sendWindow += int64(f.Increment)
	} else if s := c.streams[f.StreamID]; s != nil {
		if s.sendWindow+int64(f.Increment) > 1<<31-1 {
			c.resetLocked(s, http2.ErrCodeFlowControl, &StreamError{Code: http2.ErrCodeFlowControl})
			return nil
		}
		s.sendWindow += int64(f.Increment)
	}
	close(c.windowChange)
	c.windowChange = make(chan struct{})
	return nil
}

func (c *Conn) handleGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := &GoAwayError{LastStreamID: f.LastStreamID, Code: f.ErrCode, Debug: string(f.DebugData())}
	c.goAway = g
	c.closing = true
	for id, s := range c.streams {
		if id > f.LastStreamID {
			c.endStreamLocked(s, fmt.Errorf("%w: %w", g, errNotProcessed))
			c.removeStreamLocked(s)
		}
	}
	// The streams at or below the last ID run to completion; the
	// connection closes after the last of them.
	c.setDeadlineLocked()
}

func (c *Conn) handleHeaders(f *http2.MetaHeadersFrame) error {
	c.mu.Lock()
	s := c.streams[f.StreamID]
	if s == nil {
		nextID := c.nextID
		c.mu.Unlock()
		if f.StreamID >= nextID || f.StreamID%2 == 0 {
			return protocolError("HEADERS on stream %d that was never opened", f.StreamID)
		}
		// A late answer to a stream this side reset.
		return nil
	}
	defer c.mu.Unlock()
	if f.Truncated {
		c.resetLocked(s, http2.ErrCodeProtocol, fmt.Errorf("h2client: response headers over %d bytes", maxHeaderListSize))
		return nil
	}
	if s.ended {
		c.resetLocked(s, http2.ErrCodeStreamClosed, errors.New("h2client: HEADERS after END_STREAM"))
		return nil
	}
	if s.resp != nil {
		// Trailers: they must end the stream.
		if !f.StreamEnded() {
			c.resetLocked(s, http2.ErrCodeProtocol, errors.New("h2client: trailers without END_STREAM"))
			return nil
		}
		if len(f.PseudoFields()) > 0 {
			c.resetLocked(s, http2.ErrCodeProtocol, errors.New("h2client: pseudo-header in trailers"))
			return nil
		}
		s.trailer = http.Header{}
		for _, h := range f.RegularFields() {
			s.trailer.Add(http.CanonicalHeaderKey(h.Name), h.Value)
		}
		s.resp.Trailer = s.trailer
		c.remoteEndLocked(s)
		return nil
	}
	status := f.PseudoValue("status")
	code, err := strconv.Atoi(status)
	if err != nil || len(status) != 3 || code < 100 {
		c.resetLocked(s, http2.ErrCodeProtocol, fmt.Errorf("h2client: bad :status %q", status))
		return nil
	}
	if code < 200 {
		// 1xx: informational, the final answer follows (101 is not
		// allowed in HTTP/2).
		if code == 101 || f.StreamEnded() {
			c.resetLocked(s, http2.ErrCodeProtocol, fmt.Errorf("h2client: informational status %d", code))
		}
		return nil
	}
	resp := &http.Response{
		Status:        status + " " + http.StatusText(code),
		StatusCode:    code,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        http.Header{},
		ContentLength: -1,
	}
	for _, h := range f.RegularFields() {
		resp.Header.Add(http.CanonicalHeaderKey(h.Name), h.Value)
	}
	if cl := resp.Header.Values("Content-Length"); len(cl) > 0 {
		n, err := strconv.ParseInt(cl[0], 10, 64)
		for _, v := range cl[1:] {
			if v != cl[0] {
				err = errors.New("differing values")
			}
		}
		if err != nil || n < 0 {
			c.resetLocked(s, http2.ErrCodeProtocol, fmt.Errorf("h2client: bad content-length %q", cl[0]))
			return nil
		}
		resp.ContentLength = n
		if n > c.cfg.MaxBodyBytes {
			c.resetLocked(s, http2.ErrCodeCancel, ErrBodyTooLarge)
			return nil
		}
	}
	if f.StreamEnded() {
		resp.ContentLength = 0
	}
	// The caller owns resp from here on (content decoding rewrites its
	// ContentLength), so the read loop keeps its own copy.
	s.declaredLen = resp.ContentLength
	s.resp = resp
	s.headersArrived()
	if f.StreamEnded() {
		c.remoteEndLocked(s)
	}
	return nil
}

// remoteEndLocked records the server's END_STREAM on s.
func (c *Conn) remoteEndLocked(s *stream) {
	s.ended = true
	s.notify()
	if s.sentEnd {
		// Both directions done: forget the stream, the reader still
		// has the buffered body.
		c.removeStreamLocked(s)
	}
}

// resetLocked fails s and queues its RST_STREAM (the caller holds c.mu
// and calls flushPending after unlocking).
func (c *Conn) resetLocked(s *stream, code http2.ErrCode, err error) {
	c.endStreamLocked(s, err)
	c.removeStreamLocked(s)
	id := s.id
	c.pending = append(c.pending, func() error { return c.fr.WriteRSTStream(id, code) })
}

func (c *Conn) handleData(f *http2.DataFrame) error {
	n := int64(f.Length) // padding counts against the windows too
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.recvWindow {
		return &ConnError{Code: http2.ErrCodeFlowControl, Reason: "DATA beyond the connection window"}
	}
	c.recvWindow -= n
	s := c.streams[f.StreamID]
	if s == nil || s.ended {
		if f.StreamID >= c.nextID || f.StreamID%2 == 0 {
			return protocolError("DATA on stream %d that was never opened", f.StreamID)
		}
		if s != nil {
			c.resetLocked(s, http2.ErrCodeStreamClosed, errors.New("h2client: DATA after END_STREAM"))
		}
		// Data for a stream already given up: re-grant the window.
		c.consumedLocked(nil, n)
		return nil
	}
	if s.resp == nil {
		c.resetLocked(s, http2.ErrCodeProtocol, errors.New("h2client: DATA before response headers"))
		c.consumedLocked(nil, n)
		return nil
	}
	if n > s.recvWindow {
		c.resetLocked(s, http2.ErrCodeFlowControl, &StreamError{Code: http2.ErrCodeFlowControl})
		c.consumedLocked(nil, n)
		return nil
	}
	s.recvWindow -= n
	data := f.Data()
	s.received += int64(len(data))
	if s.received > c.cfg.MaxBodyBytes {
		c.resetLocked(s, http2.ErrCodeCancel, ErrBodyTooLarge)
		c.consumedLocked(nil, n)
		return nil
	}
	s.buf.Write(data)
	if pad := n - int64(len(data)); pad > 0 {
		c.consumedLocked(s, pad)
	}
	if f.StreamEnded() {
		if s.declaredLen >= 0 && s.received != s.declaredLen {
			c.resetLocked(s, http2.ErrCodeProtocol, fmt.Errorf("h2client: body of %d bytes, content-length %d", s.received, s.declaredLen))
			return nil
		}
		c.remoteEndLocked(s)
	}
	s.notify()
	return nil
}

// consumedLocked returns n bytes of receive window (of s, if not nil,
// and of the connection) once the application has consumed them. Like
// Chromium, it sends a WINDOW_UPDATE when half a window is unacknowledged.
func (c *Conn) consumedLocked(s *stream, n int64) {
	var streamInc, connInc uint32
	if s != nil && !s.ended && c.streams[s.id] == s {
		s.recvUnacked += n
		if s.recvUnacked >= streamWindow/2 {
			streamInc = uint32(s.recvUnacked)
			s.recvWindow += s.recvUnacked
			s.recvUnacked = 0
		}
	}
	c.recvUnacked += n
	if c.recvUnacked >= connWindow/2 {
		connInc = uint32(c.recvUnacked)
		c.recvWindow += c.recvUnacked
		c.recvUnacked = 0
	}
	if streamInc == 0 && connInc == 0 {
		return
	}
	var id uint32
	if s != nil {
		id = s.id
	}
	c.pending = append(c.pending, func() error {
		if streamInc > 0 {
			if err := c.fr.WriteWindowUpdate(id, streamInc); err != nil {
				return err
			}
		}
		if connInc > 0 {
			return c.fr.WriteWindowUpdate(0, connInc)
		}
		return nil
	})
}

// bodyReader is a response body: the buffered DATA of its stream.
type bodyReader struct {
	c      *Conn
	s      *stream
	ctx    context.Context
	closed bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	c, s := b.c, b.s
	for {
		c.mu.Lock()
		if b.closed {
			c.mu.Unlock()
			return 0, errors.New("h2client: read on closed body")
		}
		if s.buf.Len() > 0 {
			n, _ := s.buf.Read(p)
			c.consumedLocked(s, int64(n))
			c.mu.Unlock()
			c.flushPending()
			return n, nil
		}
		if s.err != nil {
			err := s.err
			c.mu.Unlock()
			return 0, err
		}
		if s.ended {
			c.mu.Unlock()
			return 0, io.EOF
		}
		c.mu.Unlock()
		select {
		case <-s.wake:
		case <-b.ctx.Done():
			c.resetStream(s, http2.ErrCodeCancel, b.ctx.Err())
			return 0, b.ctx.Err()
		}
	}
}

// Close discards the rest of the body; a stream still receiving is reset
// with CANCEL, as Chromium does when a response is dropped.
func (b *bodyReader) Close() error {
	b.c.mu.Lock()
	if b.closed {
		b.c.mu.Unlock()
		return nil
	}
	b.closed = true
	s := b.s
	done := s.ended || s.err != nil
	b.c.discardBufferedLocked(s)
	b.c.mu.Unlock()
	b.c.flushPending()
	if !done {
		b.c.resetStream(s, http2.ErrCodeCancel, errors.New("h2client: response body closed"))
	} else {
		b.c.closeStream(s, nil)
	}
	return nil
}

// discardBufferedLocked drops what s holds unread and gives its bytes back
// to the connection's receive window, which would otherwise shrink for
// good.
func (c *Conn) discardBufferedLocked(s *stream) {
	if n := int64(s.buf.Len()); n > 0 {
		s.buf.Reset()
		c.consumedLocked(nil, n)
	}
}

// flushPending writes the frames queued under c.mu (resets, window
// updates). It must be called without c.mu held.
func (c *Conn) flushPending() {
	c.mu.Lock()
	p := c.pending
	c.pending = nil
	c.mu.Unlock()
	if len(p) == 0 {
		return
	}
	c.write(func() error {
		for _, fn := range p {
			if err := fn(); err != nil {
				return err
			}
		}
		return nil
	})
}
