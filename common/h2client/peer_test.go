package h2client

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// peer is the server end of a test connection, driven frame by frame by
// the test on top of x/net's Framer, so that tests can send what a real
// server library would not (GOAWAY mid-request, window violations).
type peer struct {
	t   *testing.T
	nc  net.Conn
	fr  *http2.Framer
	dec *hpack.Decoder

	wmu  sync.Mutex
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

// newPair connects a Conn (with cfg) to a peer over loopback TCP and
// reads the client's preface, SETTINGS and WINDOW_UPDATE.
func newPair(t *testing.T, cfg Config) (*Conn, *peer) {
	t.Helper()
	return newWrappedPair(t, cfg, nil)
}

// newWrappedPair is newPair with the client's end of the connection
// passed through wrap (nil: used as it is).
func newWrappedPair(t *testing.T, cfg Config, wrap func(net.Conn) net.Conn) (*Conn, *peer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	if wrap != nil {
		nc = wrap(nc)
	}
	c, err := NewConn(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, nc: sc}
	br := bufio.NewReader(sc)
	p.fr = http2.NewFramer(sc, br)
	p.dec = hpack.NewDecoder(4096, nil)
	p.fr.ReadMetaHeaders = p.dec
	p.enc = hpack.NewEncoder(&p.hbuf)
	t.Cleanup(func() {
		c.Close()
		sc.Close()
	})
	sc.SetDeadline(time.Now().Add(30 * time.Second))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil || string(preface) != http2.ClientPreface {
		t.Fatalf("preface %q, %v", preface, err)
	}
	if f := p.read(); f.Header().Type != http2.FrameSettings {
		t.Fatalf("first frame %v, want SETTINGS", f.Header())
	}
	if f := p.read(); f.Header().Type != http2.FrameWindowUpdate {
		t.Fatalf("second frame %v, want WINDOW_UPDATE", f.Header())
	}
	return c, p
}

// read returns the next frame from the client; a MetaHeadersFrame's
// fields are copied, so they survive the next read.
func (p *peer) read() http2.Frame {
	p.t.Helper()
	f, err := p.fr.ReadFrame()
	if err != nil {
		p.t.Fatalf("peer read: %v", err)
	}
	if mh, ok := f.(*http2.MetaHeadersFrame); ok {
		mh.Fields = append([]hpack.HeaderField(nil), mh.Fields...)
	}
	return f
}

// readType skips frames until one of type ft arrives (SETTINGS ACKs,
// WINDOW_UPDATEs and PINGs the test does not care about).
func (p *peer) readType(ft http2.FrameType) http2.Frame {
	p.t.Helper()
	for {
		f := p.read()
		if f.Header().Type == ft {
			return f
		}
	}
}

// readRequest reads a request's HEADERS and its DATA to END_STREAM.
func (p *peer) readRequest() (*http2.MetaHeadersFrame, []byte) {
	p.t.Helper()
	h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	var body []byte
	end := h.StreamEnded()
	for !end {
		f := p.read()
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == h.StreamID {
			body = append(body, d.Data()...)
			end = d.StreamEnded()
		}
	}
	return h, body
}

func (p *peer) write(fn func(fr *http2.Framer) error) {
	p.t.Helper()
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := fn(p.fr); err != nil {
		p.t.Errorf("peer write: %v", err)
	}
}

// headers writes a HEADERS frame with fields given as name, value pairs.
func (p *peer) headers(id uint32, end bool, kv ...string) {
	p.t.Helper()
	p.wmu.Lock()
	p.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		p.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	block := append([]byte(nil), p.hbuf.Bytes()...)
	p.wmu.Unlock()
	p.write(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: end, EndHeaders: true})
	})
}

// respond answers stream id with 200 and body in one DATA frame.
func (p *peer) respond(id uint32, body string) {
	p.t.Helper()
	p.headers(id, false, ":status", "200", "content-length", fmt.Sprint(len(body)))
	p.write(func(fr *http2.Framer) error { return fr.WriteData(id, true, []byte(body)) })
}

// roundTrip runs c.RoundTrip in the background.
func roundTrip(c *Conn, req *http.Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := c.RoundTrip(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		ch <- result{resp, body, err}
	}()
	return ch
}

type result struct {
	resp *http.Response
	body []byte
	err  error
}

func wait(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("request did not finish")
		return result{}
	}
}

func newRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func newDecoder() *hpack.Decoder            { return hpack.NewDecoder(4096, nil) }
func newEncoder(w io.Writer) *hpack.Encoder { return hpack.NewEncoder(w) }
