package broker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A parked proxy poll's connection has left net/http. Once its response is
// written the connection is kept alive here, so that proxies do not pay a
// new TCP (and TLS) handshake per poll: a minimal HTTP/1.1 loop reads the
// next requests and passes them to the broker's handler. A /proxy request
// parks the connection again (the loop ends without a goroutine left
// behind); anything else is answered in place.

// resumedConns tracks connections served by the keep-alive loop so that
// Close can end them and Run can wait for their goroutines.
type resumedConns struct {
	mu sync.Mutex
	// conns and closed are guarded by mu.
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// resume writes msg on conn in a new goroutine, then serves further
// requests on it if keep, else closes it. It reports false (and the caller
// must answer and close conn) after Close. Close waits for the goroutine;
// it closes the connection only once the response is written (bounded by
// parkedWriteTimeout), so that no answered poll loses its response.
func (b *Broker) resume(conn net.Conn, msg []byte, keep bool) bool {
	rc := &b.resumed
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		return false
	}
	rc.wg.Add(1)
	go func() {
		defer rc.wg.Done()
		conn.SetWriteDeadline(time.Now().Add(parkedWriteTimeout))
		if _, err := conn.Write(msg); err != nil || !keep || !b.track(conn) {
			conn.Close()
			return
		}
		b.serveConn(conn)
	}()
	return true
}

// track registers a kept-alive connection so that Close can end it. It
// reports false after Close.
func (b *Broker) track(conn net.Conn) bool {
	rc := &b.resumed
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		return false
	}
	if rc.conns == nil {
		rc.conns = map[net.Conn]struct{}{}
	}
	rc.conns[conn] = struct{}{}
	return true
}

func (b *Broker) forget(conn net.Conn) {
	b.resumed.mu.Lock()
	delete(b.resumed.conns, conn)
	b.resumed.mu.Unlock()
}

// closeResumed ends every keep-alive loop and waits for them.
func (b *Broker) closeResumed() {
	rc := &b.resumed
	rc.mu.Lock()
	rc.closed = true
	for c := range rc.conns {
		c.Close()
	}
	rc.mu.Unlock()
	rc.wg.Wait()
}

// maxDrain bounds what the keep-alive loop reads of a body its handler
// left unread.
const maxDrain = 1 << 20

// keepAliveReadBuffer is small: requests here are proxy polls and answers.
const keepAliveReadBuffer = 2048

// getReader returns a read buffer for a kept-alive connection from the
// broker's pool: a connection needs one only while it is being read, not
// while its poll is parked.
func (b *Broker) getReader(r io.Reader) *bufio.Reader {
	if br, ok := b.readers.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, keepAliveReadBuffer)
}

// serveConn is the keep-alive loop for one connection.
func (b *Broker) serveConn(conn net.Conn) {
	// Headers are read through a limit, as net/http does with
	// MaxHeaderBytes: textproto would otherwise take a line of any length.
	// Bodies are bounded by the handlers and by the drain below.
	lr := &io.LimitedReader{R: conn}
	br := b.getReader(lr)
	handed := false // conn parked again: no longer ours
	defer func() {
		// A parked connection keeps no buffered bytes (handleProxy keeps
		// it alive only then), so the reader can serve another one.
		br.Reset(nil)
		b.readers.Put(br)
		if !handed {
			b.forget(conn)
			conn.Close()
		}
	}()
	for {
		// Idle wait for the next request, then the full read timeout.
		conn.SetReadDeadline(time.Now().Add(idleTimeout))
		// The bytes read from here until the headers are parsed count
		// against the limit.
		lr.N = maxHeaderBytes
		if _, err := br.Peek(1); err != nil {
			return
		}
		start := time.Now()
		conn.SetReadDeadline(start.Add(readHeaderTimeout))
		req, err := http.ReadRequest(br)
		if err != nil {
			io.WriteString(conn, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		lr.N = math.MaxInt64
		conn.SetReadDeadline(start.Add(readTimeout))
		req.RemoteAddr = conn.RemoteAddr().String()
		// A client that asked for 100 Continue holds the body back until
		// it comes (curl for 1 s), so send it, as net/http does, when the
		// handler first reads the body.
		var cont *continueReader
		if req.ProtoAtLeast(1, 1) && req.ContentLength != 0 && expectsContinue(req) {
			cont = &continueReader{ReadCloser: req.Body, conn: conn}
			req.Body = cont
		}
		// A hijacking handler may park conn and a client answer it, and
		// its next loop register it, before ServeHTTP returns: conn is
		// unregistered at the hijack, so as not to undo that.
		rw := &connResponseWriter{conn: conn, br: br, header: http.Header{}, onHijack: func() { b.forget(conn) }}
		conn.SetWriteDeadline(time.Now().Add(b.writeTimeout()))
		// The request ends when the broker closes: this loop cannot
		// notice a peer that hangs up mid-request anyway.
		b.mux.ServeHTTP(rw, req.WithContext(b.closedCtx))
		if rw.hijacked {
			// Parked (or otherwise taken over): the new owner closes it.
			handed = true
			return
		}
		// Drain what the handler left unread so the next request parses.
		// A longer body ends the connection unread: closing the body
		// would read all the rest, bounded only by the read timeout. So
		// does a body never asked for with 100 Continue: the client may
		// not send it at all.
		bodyDone := false
		if cont == nil || cont.sent {
			drained, err := io.Copy(io.Discard, io.LimitReader(req.Body, maxDrain+1))
			bodyDone = err == nil && drained <= maxDrain
		}
		if bodyDone {
			req.Body.Close()
		}
		keep := bodyDone && !req.Close && req.ProtoAtLeast(1, 1) && !b.isClosed()
		if err := rw.finish(req, keep); err != nil || !keep {
			return
		}
	}
}

// expectsContinue reports whether req asked for a 100 Continue before its
// body.
func expectsContinue(req *http.Request) bool {
	for _, v := range req.Header.Values("Expect") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "100-continue") {
				return true
			}
		}
	}
	return false
}

// continueReader is the body of a request that asked for 100 Continue: it
// sends the interim response before its first read.
type continueReader struct {
	io.ReadCloser
	conn net.Conn
	sent bool // the 100 Continue was sent (or its write failed)
}

func (c *continueReader) Read(p []byte) (int, error) {
	if !c.sent {
		c.sent = true
		// Nothing else is written on the connection before the handler
		// returns: the response is buffered until then.
		if _, err := io.WriteString(c.conn, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return 0, fmt.Errorf("broker: write 100 Continue: %w", err)
		}
	}
	return c.ReadCloser.Read(p)
}

// connResponseWriter buffers a response on a kept-alive connection.
type connResponseWriter struct {
	conn     net.Conn
	br       *bufio.Reader
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
	// onHijack runs when the connection is handed over.
	onHijack func()
}

func (w *connResponseWriter) Header() http.Header { return w.header }

func (w *connResponseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *connResponseWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// Hijack hands the connection over, as net/http's does; the proxy handler
// uses it to park the next poll.
func (w *connResponseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, errors.New("broker: connection already hijacked")
	}
	w.hijacked = true
	if w.onHijack != nil {
		w.onHijack()
	}
	// The broker's handlers never write through the returned writer: a
	// small one saves a 4 KiB buffer per parked poll.
	return w.conn, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.conn, 64)), nil
}

func (w *connResponseWriter) finish(req *http.Request, keep bool) error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status))
	w.header.Del("Content-Length")
	w.header.Del("Connection")
	w.header.Del("Transfer-Encoding")
	w.header.Write(&out)
	out.WriteString("Content-Length: " + strconv.Itoa(w.body.Len()) + "\r\n")
	if !keep {
		out.WriteString("Connection: close\r\n")
	}
	out.WriteString("\r\n")
	if req.Method != http.MethodHead {
		out.Write(w.body.Bytes())
	}
	_, err := w.conn.Write(out.Bytes())
	return err
}
