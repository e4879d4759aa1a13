package h2client

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/net/http2"
)

// TestRequestFraming: Chromium's preface, pseudo-header order, HEADERS
// priority and header order, and bodies split into frames with END_STREAM
// on the last one, for the request shapes the rendezvous sends.
func TestRequestFraming(t *testing.T) {
	big := strings.Repeat("x", 40000)
	tests := []struct {
		name, method, url, body, host string
		unknownLen                    bool
		wantAuthority, wantPath       string
		wantDATA                      []int // DATA frame lengths
	}{
		{"GET", "GET", "https://cache.test/c/x?y=1", "", "", false, "cache.test", "/c/x?y=1", nil},
		{"POST", "POST", "https://front.test:443/client", "poll", "broker.test", false, "broker.test", "/client", []int{4}},
		{"POST unknown length", "POST", "https://front.test:8443/client", "poll", "", true, "front.test:8443", "/client", []int{4}},
		{"POST empty", "POST", "https://b.test/client", "", "", false, "b.test", "/client", nil},
		{"POST 40000", "POST", "https://b.test/client", big, "", false, "b.test", "/client", []int{16384, 16384, 7232}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, p := newPair(t, Config{})
			req := newRequest(t, tc.method, tc.url, tc.body)
			req.Host = tc.host
			if tc.unknownLen {
				req.Body = io.NopCloser(strings.NewReader(tc.body))
				req.ContentLength = 0
				req.GetBody = nil
			}
			ch := roundTrip(c, req)
			h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
			var names []string
			for _, f := range h.Fields {
				names = append(names, f.Name)
			}
			if !slices.Equal(names[:4], []string{":method", ":authority", ":scheme", ":path"}) {
				t.Errorf("pseudo-headers %v", names[:4])
			}
			if got := h.PseudoValue("authority"); got != tc.wantAuthority {
				t.Errorf(":authority %q, want %q", got, tc.wantAuthority)
			}
			if got := h.PseudoValue("path"); got != tc.wantPath {
				t.Errorf(":path %q, want %q", got, tc.wantPath)
			}
			if !h.HasPriority() || !h.Priority.Exclusive || h.Priority.StreamDep != 0 || h.Priority.Weight != 219 {
				t.Errorf("priority %+v", h.Priority)
			}
			wantCL := ""
			switch {
			case tc.unknownLen:
			case tc.method == "POST":
				wantCL = fmt.Sprint(len(tc.body))
			}
			var cl string
			for _, f := range h.Fields {
				if f.Name == "content-length" {
					cl = f.Value
				}
			}
			if cl != wantCL {
				t.Errorf("content-length %q, want %q", cl, wantCL)
			}
			var lens []int
			var body []byte
			end := h.StreamEnded()
			for !end {
				if d, ok := p.read().(*http2.DataFrame); ok {
					lens = append(lens, len(d.Data()))
					body = append(body, d.Data()...)
					end = d.StreamEnded()
				}
			}
			if !slices.Equal(lens, tc.wantDATA) || string(body) != tc.body {
				t.Errorf("DATA frames %v (%d bytes), want %v", lens, len(body), tc.wantDATA)
			}
			p.respond(h.StreamID, "answer")
			r := wait(t, ch)
			if r.err != nil || string(r.body) != "answer" || r.resp.StatusCode != 200 || r.resp.Proto != "HTTP/2.0" {
				t.Fatalf("response %v %q %v", r.resp, r.body, r.err)
			}
		})
	}
}

// TestHeaderOrderAndDefaults: Chromium's defaults fill in what the caller
// leaves out, the caller's values win, connection-specific headers are
// dropped, and caller-only headers go after accept.
func TestHeaderOrderAndDefaults(t *testing.T) {
	req := newRequest(t, "POST", "https://b.test/client", "body")
	req.Header.Set("User-Agent", "custom")
	req.Header.Set("X-Amz-Target", "AmazonSQS.SendMessage")
	req.Header.Set("Connection", "keep-alive")
	req.Header.Set("TE", "gzip")
	fields, added, err := requestHeaders(req, 4)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fields {
		got = append(got, f[0]+"="+f[1])
	}
	want := []string{
		"content-length=4", `sec-ch-ua-platform="Linux"`, "user-agent=custom", "sec-ch-ua=" + secCHUA,
		"content-type=text/plain;charset=UTF-8", "sec-ch-ua-mobile=?0", "accept=*/*",
		"x-amz-target=AmazonSQS.SendMessage", "accept-encoding=gzip, deflate, br, zstd",
		"accept-language=en-US,en;q=0.9", "priority=u=1, i",
	}
	if !slices.Equal(got, want) || !added {
		t.Errorf("headers\n%q\nwant\n%q (added encoding %v)", got, want, added)
	}
	req.Header.Set("X-Bad", "a\nb")
	if _, _, err := requestHeaders(req, 4); err == nil {
		t.Error("a header value with a newline was accepted")
	}
}

// TestRequestFlowControl: the body never exceeds the server's windows;
// it waits for WINDOW_UPDATEs and follows a changed
// SETTINGS_INITIAL_WINDOW_SIZE and SETTINGS_MAX_FRAME_SIZE.
func TestRequestFlowControl(t *testing.T) {
	c, p := newPair(t, Config{})
	p.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
	})
	if f := p.readType(http2.FrameSettings); !f.(*http2.SettingsFrame).IsAck() {
		t.Fatal("no SETTINGS ACK")
	}
	body := bytes.Repeat([]byte("0123456789"), 7000) // 70000: over the 65535 connection window
	req := newRequest(t, "POST", "https://b.test/client", string(body))
	ch := roundTrip(c, req)
	h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	var got []byte
	readData := func(limit int) {
		t.Helper()
		for len(got) < limit {
			d, ok := p.read().(*http2.DataFrame)
			if ok {
				got = append(got, d.Data()...)
			}
		}
		if len(got) != limit {
			t.Fatalf("client sent %d bytes, window allowed %d", len(got), limit)
		}
	}
	readData(1000)
	// Nothing more until the window opens: the next frame after a grant
	// must start exactly at byte 1000.
	p.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(h.StreamID, 500) })
	readData(1500)
	// A larger initial window applies to the open stream as a delta
	// (RFC 9113 §6.9.2): +99000 makes the stream window 99000 - 1500 + 1500.
	p.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100000},
			http2.Setting{ID: http2.SettingMaxFrameSize, Val: 32768})
	})
	// The connection window (65535) is the limit now.
	readData(65535)
	p.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, 1<<20) })
	readData(len(body))
	if !bytes.Equal(got, body) {
		t.Fatal("body corrupted")
	}
	p.respond(h.StreamID, "ok")
	if r := wait(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
}

// TestResponseFlowControl: a response larger than the stream window
// arrives whole, because the client re-grants the window as the body is
// read (after half a window, as Chromium does); a server that ignores the
// window gets the stream reset with FLOW_CONTROL_ERROR.
func TestResponseFlowControl(t *testing.T) {
	c, p := newPair(t, Config{MaxBodyBytes: 16 << 20})
	const size = 9 << 20 // over the 6 MiB stream window
	payload := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(payload)
	ch := roundTrip(c, newRequest(t, "GET", "https://b.test/big", ""))
	h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	p.headers(h.StreamID, false, ":status", "200")
	// Send within the windows the client announced, tracking its updates.
	streamWin, connWin := int64(streamWindow), int64(connWindow)
	var updates []uint32
	sent := 0
	for sent < size {
		for streamWin == 0 || connWin == 0 {
			f := p.read()
			if wu, ok := f.(*http2.WindowUpdateFrame); ok {
				updates = append(updates, wu.Increment)
				if wu.StreamID == 0 {
					connWin += int64(wu.Increment)
				} else {
					streamWin += int64(wu.Increment)
				}
			}
		}
		n := int(min(16384, streamWin, connWin, int64(size-sent)))
		chunk := payload[sent : sent+n]
		p.write(func(fr *http2.Framer) error { return fr.WriteData(h.StreamID, sent+n == size, chunk) })
		sent += n
		streamWin -= int64(n)
		connWin -= int64(n)
	}
	r := wait(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if sha256.Sum256(r.body) != sha256.Sum256(payload) {
		t.Fatalf("body of %d bytes differs", len(r.body))
	}
	for _, u := range updates {
		if u < streamWindow/2 {
			t.Errorf("WINDOW_UPDATE of %d: smaller than half a window", u)
		}
	}
	if len(updates) == 0 {
		t.Error("no WINDOW_UPDATE for a body over the window")
	}

	// A server that overruns the stream window. Nothing reads the body
	// until the overrun, so the client grants no more window meanwhile.
	resp, id := openResponse(t, c, p, newRequest(t, "GET", "https://b.test/overrun", ""))
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	chunk := make([]byte, 16384)
	for sent := 0; sent <= streamWindow; sent += len(chunk) {
		p.write(func(fr *http2.Framer) error { return fr.WriteData(id, false, chunk) })
	}
	rst := p.readType(http2.FrameRSTStream).(*http2.RSTStreamFrame)
	if rst.ErrCode != http2.ErrCodeFlowControl || rst.StreamID != id {
		t.Errorf("RST_STREAM %v on %d", rst.ErrCode, rst.StreamID)
	}
	var se *StreamError
	if _, err := io.ReadAll(resp.Body); !errors.As(err, &se) || se.Code != http2.ErrCodeFlowControl {
		t.Errorf("overrun: %v", err)
	}
}

// openResponse sends req through c in the background, answers its HEADERS
// with status 200 and no END_STREAM, and returns the response, whose body
// the test then feeds or cuts, and its stream ID. The response is nil if
// RoundTrip failed (reported as a test error).
func openResponse(t *testing.T, c *Conn, p *peer, req *http.Request) (*http.Response, uint32) {
	t.Helper()
	respCh := make(chan *http.Response, 1)
	go func() {
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Error(err)
		}
		respCh <- resp
	}()
	h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	p.headers(h.StreamID, false, ":status", "200")
	return <-respCh, h.StreamID
}

// TestGoAway: streams above the GOAWAY's last stream ID fail as not
// processed, those at or below it complete, and the connection takes no
// new request.
func TestGoAway(t *testing.T) {
	c, p := newPair(t, Config{})
	ch1 := roundTrip(c, newRequest(t, "GET", "https://b.test/1", ""))
	h1 := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	ch3 := roundTrip(c, newRequest(t, "GET", "https://b.test/3", ""))
	h3 := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	if h3.Priority.StreamDep != h1.StreamID {
		// Chromium chains same-priority streams: each depends on the
		// newest open one.
		t.Errorf("second stream depends on %d, want %d", h3.Priority.StreamDep, h1.StreamID)
	}
	p.write(func(fr *http2.Framer) error { return fr.WriteGoAway(h1.StreamID, http2.ErrCodeNo, []byte("restart")) })
	r3 := wait(t, ch3)
	var g *GoAwayError
	if !errors.As(r3.err, &g) || !IsRetryable(r3.err) || g.Debug != "restart" {
		t.Errorf("stream above last ID: %v (retryable %v)", r3.err, IsRetryable(r3.err))
	}
	if c.CanTakeRequest() {
		t.Error("connection takes requests after GOAWAY")
	}
	p.respond(h1.StreamID, "one")
	if r1 := wait(t, ch1); r1.err != nil || string(r1.body) != "one" {
		t.Errorf("stream at last ID: %q %v", r1.body, r1.err)
	}
	if _, err := c.RoundTrip(newRequest(t, "GET", "https://b.test/5", "")); !IsRetryable(err) {
		t.Errorf("request after GOAWAY: %v", err)
	}
}

// countingTransport returns a listener on loopback and a Transport whose
// every dial, whatever the address, goes to it and is counted. Both are
// closed when the test ends.
func countingTransport(t *testing.T) (net.Listener, *Transport, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dials := new(atomic.Int32)
	tr := &Transport{DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, ln.Addr().String())
	}}
	t.Cleanup(func() { tr.Close() })
	return ln, tr, dials
}

// acceptedPeer is the peer on a connection a countingTransport's listener
// accepted, past the client's preface.
func acceptedPeer(t *testing.T, nc net.Conn) *peer {
	p := &peer{t: t, nc: nc}
	p.fr = http2.NewFramer(nc, nc)
	p.fr.ReadMetaHeaders = newDecoder()
	p.enc = newEncoder(&p.hbuf)
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	io.ReadFull(nc, make([]byte, len(http2.ClientPreface)))
	return p
}

// TestTransportRetriesAfterGoAway: the Transport sends a request the
// server did not process again on a new connection, body included.
func TestTransportRetriesAfterGoAway(t *testing.T) {
	ln, tr, dials := countingTransport(t)
	serverDone := make(chan string, 1)
	go func() {
		// First connection: GOAWAY with last stream 0 as soon as the
		// request arrives. Second: answer with the body it got.
		var got string
		for i := range 2 {
			nc, err := ln.Accept()
			if err != nil {
				serverDone <- err.Error()
				return
			}
			defer nc.Close()
			p := acceptedPeer(t, nc)
			h, body := p.readRequest()
			if i == 0 {
				p.write(func(fr *http2.Framer) error { return fr.WriteGoAway(0, http2.ErrCodeNo, nil) })
				continue
			}
			got = string(body)
			p.respond(h.StreamID, "second")
		}
		serverDone <- got
	}()
	req := newRequest(t, "POST", "https://b.test/client", "poll body")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "second" || dials.Load() != 2 {
		t.Errorf("body %q after %d dials", b, dials.Load())
	}
	if got := <-serverDone; got != "poll body" {
		t.Errorf("second server got %q", got)
	}
}

// TestRSTStream: a refused stream may be retried, a cancelled one fails
// with the code; the connection survives both.
func TestRSTStream(t *testing.T) {
	c, p := newPair(t, Config{})
	for _, tc := range []struct {
		code      http2.ErrCode
		retryable bool
	}{{http2.ErrCodeRefusedStream, true}, {http2.ErrCodeCancel, false}, {http2.ErrCodeInternal, false}} {
		ch := roundTrip(c, newRequest(t, "POST", "https://b.test/client", "x"))
		h, _ := p.readRequest()
		p.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(h.StreamID, tc.code) })
		r := wait(t, ch)
		var se *StreamError
		if !errors.As(r.err, &se) || se.Code != tc.code || !se.Remote || IsRetryable(r.err) != tc.retryable {
			t.Errorf("%v: %v", tc.code, r.err)
		}
	}
	ch := roundTrip(c, newRequest(t, "GET", "https://b.test/", ""))
	h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	p.respond(h.StreamID, "still here")
	if r := wait(t, ch); r.err != nil || string(r.body) != "still here" {
		t.Errorf("after resets: %q %v", r.body, r.err)
	}
}

// TestEarlyResponse: a complete response before the whole request body,
// followed by RST_STREAM(NO_ERROR), is a valid answer (RFC 9113 §8.1).
func TestEarlyResponse(t *testing.T) {
	c, p := newPair(t, Config{})
	p.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	})
	p.readType(http2.FrameSettings)
	ch := roundTrip(c, newRequest(t, "POST", "https://b.test/client", strings.Repeat("b", 100)))
	h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	p.readType(http2.FrameData)
	p.respond(h.StreamID, "early")
	p.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(h.StreamID, http2.ErrCodeNo) })
	if r := wait(t, ch); r.err != nil || string(r.body) != "early" {
		t.Errorf("%q %v", r.body, r.err)
	}
}

// TestServerSettings: a smaller HPACK table, a stream limit and a header
// list limit from the server are obeyed.
func TestServerSettings(t *testing.T) {
	c, p := newPair(t, Config{})
	p.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0},
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})
	})
	p.readType(http2.FrameSettings)
	// The peer's decoder now refuses any dynamic table: the client must
	// have shrunk its encoder's table to 0 (with a size update).
	p.dec.SetAllowedMaxDynamicTableSize(0)
	for i := range 2 {
		ch := roundTrip(c, newRequest(t, "GET", "https://b.test/x", ""))
		h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
		if i == 0 && c.CanTakeRequest() {
			t.Error("a second stream allowed with MAX_CONCURRENT_STREAMS 1")
		}
		p.respond(h.StreamID, "ok")
		if r := wait(t, ch); r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
	}
	p.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: 100})
	})
	p.readType(http2.FrameSettings)
	if _, err := c.RoundTrip(newRequest(t, "GET", "https://b.test/x", "")); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("header list over the server's limit: %v", err)
	}
	// Invalid settings are a connection error.
	p.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100})
	})
	g := p.readType(http2.FrameGoAway).(*http2.GoAwayFrame)
	if g.ErrCode != http2.ErrCodeProtocol {
		t.Errorf("GOAWAY %v for MAX_FRAME_SIZE 100", g.ErrCode)
	}
}

// TestOversizedResponse: a body over MaxBodyBytes, announced or not,
// fails with ErrBodyTooLarge and resets the stream.
func TestOversizedResponse(t *testing.T) {
	c, p := newPair(t, Config{MaxBodyBytes: 1000})
	ch := roundTrip(c, newRequest(t, "GET", "https://b.test/announced", ""))
	h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	p.headers(h.StreamID, false, ":status", "200", "content-length", "5000")
	if r := wait(t, ch); !errors.Is(r.err, ErrBodyTooLarge) {
		t.Errorf("announced: %v", r.err)
	}
	if rst := p.readType(http2.FrameRSTStream).(*http2.RSTStreamFrame); rst.ErrCode != http2.ErrCodeCancel {
		t.Errorf("RST_STREAM %v", rst.ErrCode)
	}

	ch = roundTrip(c, newRequest(t, "GET", "https://b.test/unannounced", ""))
	h = p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	p.headers(h.StreamID, false, ":status", "200")
	p.write(func(fr *http2.Framer) error { return fr.WriteData(h.StreamID, false, make([]byte, 800)) })
	p.write(func(fr *http2.Framer) error { return fr.WriteData(h.StreamID, false, make([]byte, 800)) })
	if r := wait(t, ch); !errors.Is(r.err, ErrBodyTooLarge) {
		t.Errorf("unannounced: %v", r.err)
	}
	p.readType(http2.FrameRSTStream)
}

// TestCancellation: a server that never answers holds a request only until
// its context ends, and the stream is reset; a body read is cancelled the
// same way.
func TestCancellation(t *testing.T) {
	c, p := newPair(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req := newRequest(t, "POST", "https://b.test/client", "x").WithContext(ctx)
	start := time.Now()
	ch := roundTrip(c, req)
	h, _ := p.readRequest()
	r := wait(t, ch)
	if !errors.Is(r.err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Errorf("after %v: %v", time.Since(start), r.err)
	}
	if rst := p.readType(http2.FrameRSTStream).(*http2.RSTStreamFrame); rst.StreamID != h.StreamID || rst.ErrCode != http2.ErrCodeCancel {
		t.Errorf("RST_STREAM %v on %d", rst.ErrCode, rst.StreamID)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	rs, _ := openResponse(t, c, p, newRequest(t, "GET", "https://b.test/slow", "").WithContext(ctx2))
	if rs == nil {
		return
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(rs.Body)
		readErr <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel2()
	if err := <-readErr; !errors.Is(err, context.Canceled) {
		t.Errorf("body read: %v", err)
	}
	rs.Body.Close()
	p.readType(http2.FrameRSTStream)
}

// TestHealthCheckPing: after a quiet spell a request is preceded by a
// PING; a server that never answers it gets the connection dropped
// (ErrHung), and one that answers keeps it.
func TestHealthCheckPing(t *testing.T) {
	cfg := Config{PingAfter: 50 * time.Millisecond, PingTimeout: 300 * time.Millisecond}
	c, p := newPair(t, cfg)
	time.Sleep(100 * time.Millisecond)
	ch := roundTrip(c, newRequest(t, "POST", "https://b.test/", "body"))
	// Chromium's order: HEADERS, PING, DATA.
	var order []http2.FrameType
	var ping *http2.PingFrame
	var h *http2.MetaHeadersFrame
	for len(order) < 3 {
		f := p.read()
		switch f := f.(type) {
		case *http2.PingFrame:
			ping = f
		case *http2.MetaHeadersFrame:
			h = f
		case *http2.DataFrame:
		default:
			continue
		}
		order = append(order, f.Header().Type)
	}
	if !slices.Equal(order, []http2.FrameType{http2.FrameHeaders, http2.FramePing, http2.FrameData}) {
		t.Errorf("frames %v, want HEADERS, PING, DATA", order)
	}
	if ping.IsAck() || ping.Data != [8]byte{0, 0, 0, 0, 0, 0, 0, 1} {
		t.Errorf("PING %v %x", ping.IsAck(), ping.Data)
	}
	p.write(func(fr *http2.Framer) error { return fr.WritePing(true, ping.Data) })
	p.respond(h.StreamID, "alive")
	if r := wait(t, ch); r.err != nil {
		t.Fatal(r.err)
	}

	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	ch = roundTrip(c, newRequest(t, "GET", "https://b.test/", ""))
	if ping := p.readType(http2.FramePing).(*http2.PingFrame); ping.Data != [8]byte{0, 0, 0, 0, 0, 0, 0, 3} {
		t.Errorf("second PING %x", ping.Data)
	}
	// No answer at all now.
	r := wait(t, ch)
	if !errors.Is(r.err, ErrHung) || time.Since(start) < cfg.PingTimeout {
		t.Errorf("after %v: %v", time.Since(start), r.err)
	}
}

// TestServerPing: the client acknowledges a server's PING with its data.
func TestServerPing(t *testing.T) {
	_, p := newPair(t, Config{})
	data := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	p.write(func(fr *http2.Framer) error { return fr.WritePing(false, data) })
	ack := p.readType(http2.FramePing).(*http2.PingFrame)
	if !ack.IsAck() || ack.Data != data {
		t.Errorf("PING ack %v %x", ack.IsAck(), ack.Data)
	}
}

// TestIdleTimeout: an unused connection says GOAWAY and closes.
func TestIdleTimeout(t *testing.T) {
	c, p := newPair(t, Config{IdleTimeout: 200 * time.Millisecond})
	ch := roundTrip(c, newRequest(t, "GET", "https://b.test/", ""))
	h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	p.respond(h.StreamID, "ok")
	wait(t, ch)
	g := p.readType(http2.FrameGoAway).(*http2.GoAwayFrame)
	if g.ErrCode != http2.ErrCodeNo {
		t.Errorf("GOAWAY %v", g.ErrCode)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open")
	}
}

// TestProtocolErrors: what a server must not send ends the stream or the
// connection with the right code, never a hang or a panic.
func TestProtocolErrors(t *testing.T) {
	t.Run("push promise", func(t *testing.T) {
		c, p := newPair(t, Config{})
		ch := roundTrip(c, newRequest(t, "GET", "https://b.test/", ""))
		h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
		p.write(func(fr *http2.Framer) error {
			return fr.WritePushPromise(http2.PushPromiseParam{StreamID: h.StreamID, PromiseID: 2, BlockFragment: []byte{0x82}, EndHeaders: true})
		})
		if g := p.readType(http2.FrameGoAway).(*http2.GoAwayFrame); g.ErrCode != http2.ErrCodeProtocol {
			t.Errorf("GOAWAY %v", g.ErrCode)
		}
		if r := wait(t, ch); r.err == nil {
			t.Error("request succeeded")
		}
	})
	t.Run("data on idle stream", func(t *testing.T) {
		_, p := newPair(t, Config{})
		p.write(func(fr *http2.Framer) error { return fr.WriteData(7, false, []byte("x")) })
		if g := p.readType(http2.FrameGoAway).(*http2.GoAwayFrame); g.ErrCode != http2.ErrCodeProtocol {
			t.Errorf("GOAWAY %v", g.ErrCode)
		}
	})
	t.Run("bad status", func(t *testing.T) {
		c, p := newPair(t, Config{})
		ch := roundTrip(c, newRequest(t, "GET", "https://b.test/", ""))
		h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
		p.headers(h.StreamID, true, ":status", "2x0")
		if r := wait(t, ch); r.err == nil || !strings.Contains(r.err.Error(), ":status") {
			t.Errorf("%v", r.err)
		}
		if rst := p.readType(http2.FrameRSTStream).(*http2.RSTStreamFrame); rst.ErrCode != http2.ErrCodeProtocol {
			t.Errorf("RST_STREAM %v", rst.ErrCode)
		}
	})
	t.Run("content-length mismatch", func(t *testing.T) {
		c, p := newPair(t, Config{})
		ch := roundTrip(c, newRequest(t, "GET", "https://b.test/", ""))
		h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
		p.headers(h.StreamID, false, ":status", "200", "content-length", "10")
		p.write(func(fr *http2.Framer) error { return fr.WriteData(h.StreamID, true, []byte("short")) })
		if r := wait(t, ch); r.err == nil {
			t.Errorf("body %q accepted", r.body)
		}
	})
	t.Run("informational then final, trailers", func(t *testing.T) {
		c, p := newPair(t, Config{})
		ch := roundTrip(c, newRequest(t, "GET", "https://b.test/", ""))
		h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
		p.headers(h.StreamID, false, ":status", "103", "link", "</x>")
		p.headers(h.StreamID, false, ":status", "404")
		p.write(func(fr *http2.Framer) error { return fr.WriteData(h.StreamID, false, []byte("nf")) })
		p.headers(h.StreamID, true, "x-trailer", "t")
		r := wait(t, ch)
		if r.err != nil || r.resp.StatusCode != 404 || string(r.body) != "nf" || r.resp.Trailer.Get("X-Trailer") != "t" {
			t.Errorf("%v %q %v", r.resp, r.body, r.err)
		}
	})
}

// TestContentDecoding: the codings in Chromium's accept-encoding are
// undone when this package announced them, and left alone when the
// caller asked for them itself.
func TestContentDecoding(t *testing.T) {
	plain := []byte(strings.Repeat(`{"answer":"sdp"}`, 200))
	encode := map[string]func(w io.Writer) io.WriteCloser{
		"gzip":         func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) },
		"deflate":      func(w io.Writer) io.WriteCloser { return zlib.NewWriter(w) },
		"deflate(raw)": func(w io.Writer) io.WriteCloser { z, _ := flate.NewWriter(w, 5); return z },
		"br":           func(w io.Writer) io.WriteCloser { return brotli.NewWriter(w) },
		"zstd":         func(w io.Writer) io.WriteCloser { z, _ := zstd.NewWriter(w); return z },
	}
	c, p := newPair(t, Config{})
	for name, enc := range encode {
		coding, _, _ := strings.Cut(name, "(")
		var buf bytes.Buffer
		w := enc(&buf)
		w.Write(plain)
		w.Close()
		for _, callerAsked := range []bool{false, true} {
			req := newRequest(t, "GET", "https://b.test/", "")
			if callerAsked {
				req.Header.Set("Accept-Encoding", coding)
			}
			ch := roundTrip(c, req)
			h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
			p.headers(h.StreamID, false, ":status", "200", "content-encoding", coding, "content-length", fmt.Sprint(buf.Len()))
			p.write(func(fr *http2.Framer) error { return fr.WriteData(h.StreamID, true, buf.Bytes()) })
			r := wait(t, ch)
			want := plain
			if callerAsked {
				want = buf.Bytes()
			}
			if r.err != nil || !bytes.Equal(r.body, want) {
				t.Errorf("%s (caller asked %v): %d bytes, %v", name, callerAsked, len(r.body), r.err)
			}
		}
	}
}

// TestCloseFailsOpenRequests: Close ends a waiting request at once and
// says GOAWAY.
func TestCloseFailsOpenRequests(t *testing.T) {
	c, p := newPair(t, Config{})
	ch := roundTrip(c, newRequest(t, "GET", "https://b.test/", ""))
	p.readType(http2.FrameHeaders)
	c.Close()
	c.Close()
	if r := wait(t, ch); !errors.Is(r.err, ErrConnClosed) {
		t.Errorf("%v", r.err)
	}
	if g := p.readType(http2.FrameGoAway).(*http2.GoAwayFrame); g.ErrCode != http2.ErrCodeNo {
		t.Errorf("GOAWAY %v", g.ErrCode)
	}
}

// TestTransportRetriesOnReusedConnLoss: a reused connection that breaks
// before any of the answer arrived (a server closing it as the request
// went out) costs a new connection, not the request; the first request of
// a fresh connection is not resent.
func TestTransportRetriesOnReusedConnLoss(t *testing.T) {
	ln, tr, dials := countingTransport(t)
	// Connection 1 answers one request and drops the second; connection
	// 2 answers; connection 3 drops its first request.
	go func() {
		for i := range 3 {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
			p := acceptedPeer(t, nc)
			switch i {
			case 0:
				h, _ := p.readRequest()
				p.respond(h.StreamID, "first")
				p.readRequest()
				nc.Close()
			case 1:
				h, body := p.readRequest()
				p.respond(h.StreamID, "again "+string(body))
			case 2:
				p.readRequest()
				nc.Close()
			}
		}
	}()
	send := func() (string, error) {
		resp, err := tr.RoundTrip(newRequest(t, "POST", "https://b.test/client", "poll"))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for _, want := range []string{"first", "again poll"} {
		if got, err := send(); got != want || err != nil {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
	tr.CloseIdleConnections()
	if _, err := send(); err == nil || IsRetryable(err) || !errors.Is(err, ErrConnClosed) {
		t.Errorf("first request on a fresh connection: %v", err)
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("%d dials, want 3", n)
	}
}

// TestDecodedBodyLimit: MaxBodyBytes holds for the decoded body too, so a
// small compressed body cannot expand without bound; a body exactly at the
// limit is whole.
func TestDecodedBodyLimit(t *testing.T) {
	const limit = 4096
	c, p := newPair(t, Config{MaxBodyBytes: limit})
	for _, size := range []int{limit, limit + 1, 1 << 20} {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(bytes.Repeat([]byte("a"), size))
		zw.Close()
		if buf.Len() >= limit {
			t.Fatalf("%d bytes compress to %d, not below the limit", size, buf.Len())
		}
		ch := roundTrip(c, newRequest(t, "GET", "https://b.test/", ""))
		h := p.readType(http2.FrameHeaders).(*http2.MetaHeadersFrame)
		p.headers(h.StreamID, false, ":status", "200", "content-encoding", "gzip")
		p.write(func(fr *http2.Framer) error { return fr.WriteData(h.StreamID, true, buf.Bytes()) })
		r := wait(t, ch)
		if size <= limit {
			if r.err != nil || len(r.body) != size {
				t.Errorf("%d bytes decoded: got %d, %v", size, len(r.body), r.err)
			}
		} else if !errors.Is(r.err, ErrBodyTooLarge) || len(r.body) > limit {
			t.Errorf("%d bytes decoded: got %d, %v; want at most %d and ErrBodyTooLarge", size, len(r.body), r.err, limit)
		}
	}
}

// refusingConn is the client's end of a connection that a server refuses
// right after the preface: once armed, the next write fails, and what
// the server had sent before closing (goAway) reaches the reader only
// then, as when the closing server's bytes and the failed write cross.
type refusingConn struct {
	net.Conn
	goAway []byte

	mu      sync.Mutex
	armed   bool
	pending []byte        // goAway, handed to Read after the write failed
	refused chan struct{} // closed when the write has failed
}

func (c *refusingConn) arm() {
	c.mu.Lock()
	c.armed = true
	c.mu.Unlock()
}

func (c *refusingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed {
		return c.Conn.Write(b)
	}
	if c.pending == nil {
		c.pending = c.goAway
		close(c.refused)
		// Wake a reader waiting in the kernel for bytes that, here, come
		// from pending instead.
		c.Conn.SetReadDeadline(time.Now())
	}
	return 0, syscall.EPIPE
}

func (c *refusingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 || err == nil {
		return n, err
	}
	select {
	case <-c.refused:
	default:
		return n, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return 0, io.EOF
	}
	n = copy(b, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *refusingConn) SetReadDeadline(t time.Time) error {
	select {
	case <-c.refused:
		return nil // keep the reader awake for pending
	default:
		return c.Conn.SetReadDeadline(t)
	}
}

func (c *refusingConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// A server that refuses the connection with GOAWAY (last stream 0) may
// break it before the request's HEADERS are written. The request was not
// processed (RFC 9113 §6.8) and must come back retryable, not as the
// write error; otherwise a randomized ClientHello that picked a cipher
// HTTP/2 forbids would end the rendezvous instead of being redrawn.
func TestRefusedBeforeHeaders(t *testing.T) {
	var goAway bytes.Buffer
	if err := http2.NewFramer(&goAway, nil).WriteGoAway(0, http2.ErrCodeInadequateSecurity, []byte("TLS 1.2 cipher")); err != nil {
		t.Fatal(err)
	}
	var rc *refusingConn
	c, _ := newWrappedPair(t, Config{}, func(nc net.Conn) net.Conn {
		rc = &refusingConn{Conn: nc, goAway: goAway.Bytes(), refused: make(chan struct{})}
		return rc
	})
	rc.arm()
	_, err := c.RoundTrip(newRequest(t, "POST", "https://b.test/client", "poll"))
	var g *GoAwayError
	if !IsRetryable(err) || !errors.As(err, &g) || g.Code != http2.ErrCodeInadequateSecurity {
		t.Fatalf("RoundTrip: %v (retryable %v), want the GOAWAY, retryable", err, IsRetryable(err))
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("reader still running after the connection failed")
	}
}
