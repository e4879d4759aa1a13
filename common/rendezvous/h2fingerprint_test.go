package rendezvous

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// h2Record is what an HTTP/2 client sent on one connection up to and
// including its first request: the frames the Akamai HTTP/2 fingerprint
// (SETTINGS|WINDOW_UPDATE|PRIORITY|pseudo-header order) is made of, plus
// the first HEADERS frame's priority fields and header list.
type h2Record struct {
	Settings     []http2.Setting
	WindowUpdate uint32   // connection-level increments before the first HEADERS, summed
	Priority     []string // PRIORITY frames before the first HEADERS, "id:excl:dep:weight"
	Frames       []string // every frame type (with flags) before the request ended
	Headers      []hpack.HeaderField
	HeadersPrio  string // the first HEADERS frame's priority, "excl:dep:weight", or "none"
	HeaderFlags  http2.Flags
	BodyFrames   []string // DATA frames of the first request, "len[+END_STREAM]"
	Body         []byte
	// TLSRecords are the client's TLS records up to the end of the first
	// request, "type:length" (what a censor sees of the frames above).
	TLSRecords []string
}

// Akamai returns the fingerprint in the Akamai format: settings
// "id:value" joined by ";", the window increment, the PRIORITY frames (or
// 0), and the pseudo-headers as initials.
func (r *h2Record) Akamai() string {
	var s []string
	for _, st := range r.Settings {
		s = append(s, fmt.Sprintf("%d:%d", uint16(st.ID), st.Val))
	}
	prio := "0"
	if len(r.Priority) > 0 {
		prio = strings.Join(r.Priority, ",")
	}
	var pseudo []string
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Name, ":") {
			pseudo = append(pseudo, h.Name[1:2])
		}
	}
	return fmt.Sprintf("%s|%d|%s|%s", strings.Join(s, ";"), r.WindowUpdate, prio, strings.Join(pseudo, ","))
}

// header returns the value of the first header called name.
func (r *h2Record) header(name string) string {
	for _, h := range r.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// headerNames lists the request's header names in order.
func (r *h2Record) headerNames() []string {
	var n []string
	for _, h := range r.Headers {
		n = append(n, h.Name)
	}
	return n
}

// h2RecordServer is a minimal HTTP/2 server on 127.0.0.1 (written on the
// Framer, so that it sees every frame a client sends, which net/http's
// server hides). It answers every request with 200 and a small body, and
// records each connection's opening.
type h2RecordServer struct {
	ln   net.Listener
	pool *x509.CertPool
	wg   sync.WaitGroup
	// page is served for GET / (Chromium's start page).
	page func(host string) string

	mu      sync.Mutex // guards the following fields
	records []*h2Record
	conns   map[net.Conn]bool
	closed  bool
	notify  chan struct{} // closed and replaced when a record is added
}

func startH2RecordServer(t *testing.T, names ...string) *h2RecordServer {
	t.Helper()
	cert := testenv.SelfSigned(t, names...)
	s := &h2RecordServer{pool: x509.NewCertPool(), conns: map[net.Conn]bool{}, notify: make(chan struct{})}
	s.pool.AddCert(cert.Leaf)
	var err error
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2"},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		testenv.AcceptEach(s.ln.Accept, func(c net.Conn) {
			// Connections are tracked so that cleanup can end those a
			// browser keeps open; one accepted as cleanup runs is dropped.
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				return
			}
			s.conns[c] = true
			s.mu.Unlock()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			tap := &recordTap{Conn: c}
			tc := tls.Server(tap, conf)
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if err := tc.Handshake(); err != nil {
				return
			}
			s.serve(tc, tap)
		})
	}()
	t.Cleanup(func() {
		s.ln.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *h2RecordServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// recorded returns the records so far.
func (s *h2RecordServer) recorded() []*h2Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*h2Record(nil), s.records...)
}

// waitFor waits until some record satisfies ok, which gets its index
// (and must not call the server's methods).
func (s *h2RecordServer) waitFor(timeout time.Duration, ok func(int, *h2Record) bool) *h2Record {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		for i, r := range s.records {
			if ok(i, r) {
				s.mu.Unlock()
				return r
			}
		}
		ch := s.notify
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return nil
		}
	}
}

// serve speaks just enough HTTP/2 to answer requests, recording the
// frames up to the end of the first request.
func (s *h2RecordServer) serve(c net.Conn, tap *recordTap) {
	br := bufio.NewReader(c)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	var wmu sync.Mutex
	fr := http2.NewFramer(c, br)
	fr.ReadMetaHeaders = hpack.NewDecoder(65536, nil)
	fr.MaxHeaderListSize = 1 << 20
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	// Settings as a typical CDN front sends them.
	wmu.Lock()
	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65536})
	fr.WriteWindowUpdate(0, 1<<20)
	wmu.Unlock()

	rec := &h2Record{HeadersPrio: "none"}
	recording := true
	type stream struct {
		method, path, host string
		body               []byte
	}
	streams := map[uint32]*stream{}
	finish := func() {
		if !recording {
			return
		}
		recording = false
		rec.TLSRecords = tap.list()
		s.mu.Lock()
		s.records = append(s.records, rec)
		close(s.notify)
		s.notify = make(chan struct{})
		s.mu.Unlock()
	}
	defer finish()
	respond := func(id uint32, st *stream) {
		body := "ok"
		ctype := "text/plain"
		if st.method == "GET" && st.path == "/" && s.page != nil {
			body, ctype = s.page(st.host), "text/html"
		}
		hbuf.Reset()
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		enc.WriteField(hpack.HeaderField{Name: "content-type", Value: ctype})
		enc.WriteField(hpack.HeaderField{Name: "access-control-allow-origin", Value: "*"})
		enc.WriteField(hpack.HeaderField{Name: "content-length", Value: fmt.Sprint(len(body))})
		wmu.Lock()
		defer wmu.Unlock()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true})
		fr.WriteData(id, true, []byte(body))
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if recording {
			rec.Frames = append(rec.Frames, fmt.Sprintf("%s%s", f.Header().Type, flagString(f.Header())))
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if recording && rec.Headers == nil {
				f.ForeachSetting(func(st http2.Setting) error {
					rec.Settings = append(rec.Settings, st)
					return nil
				})
			}
			wmu.Lock()
			fr.WriteSettingsAck()
			wmu.Unlock()
		case *http2.WindowUpdateFrame:
			if recording && rec.Headers == nil && f.StreamID == 0 {
				rec.WindowUpdate += f.Increment
			}
		case *http2.PriorityFrame:
			if recording && rec.Headers == nil {
				rec.Priority = append(rec.Priority, fmt.Sprintf("%d:%d:%d:%d", f.StreamID,
					b2i(f.Exclusive), f.StreamDep, int(f.Weight)+1))
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				wmu.Lock()
				fr.WritePing(true, f.Data)
				wmu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			st := &stream{}
			for _, h := range f.Fields {
				switch h.Name {
				case ":method":
					st.method = h.Value
				case ":path":
					st.path = h.Value
				case ":authority":
					st.host = h.Value
				}
			}
			if recording && rec.Headers == nil {
				rec.Headers = append([]hpack.HeaderField(nil), f.Fields...)
				rec.HeaderFlags = f.Flags
				if f.HasPriority() {
					p := f.Priority
					rec.HeadersPrio = fmt.Sprintf("%d:%d:%d", b2i(p.Exclusive), p.StreamDep, int(p.Weight)+1)
				}
			}
			streams[f.StreamID] = st
			if f.StreamEnded() {
				delete(streams, f.StreamID)
				respond(f.StreamID, st)
				finish()
			}
		case *http2.DataFrame:
			st := streams[f.StreamID]
			if recording {
				d := fmt.Sprint(len(f.Data()))
				if f.StreamEnded() {
					d += "+END_STREAM"
				}
				rec.BodyFrames = append(rec.BodyFrames, d)
				rec.Body = append(rec.Body, f.Data()...)
			}
			if n := len(f.Data()); n > 0 {
				wmu.Lock()
				fr.WriteWindowUpdate(0, uint32(n))
				fr.WriteWindowUpdate(f.StreamID, uint32(n))
				wmu.Unlock()
			}
			if st != nil && f.StreamEnded() {
				delete(streams, f.StreamID)
				respond(f.StreamID, st)
				finish()
			}
		}
	}
}

func flagString(h http2.FrameHeader) string {
	if h.Flags == 0 {
		return ""
	}
	return fmt.Sprintf("[%#x]", uint8(h.Flags))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// recordTap splits what the client sends into TLS records as the server
// reads it.
type recordTap struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
	records []string
}

func (r *recordTap) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, p[:n]...)
	for len(r.pending) >= 5 {
		l := int(r.pending[3])<<8 | int(r.pending[4])
		if len(r.pending) < 5+l {
			break
		}
		r.records = append(r.records, fmt.Sprintf("%d:%d", r.pending[0], l))
		r.pending = r.pending[5+l:]
	}
	return n, err
}

func (r *recordTap) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.records...)
}
