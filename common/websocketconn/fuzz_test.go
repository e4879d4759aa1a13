//go:build !js

package websocketconn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// memConn is a net.Conn whose reads return fixed bytes and then io.EOF
// (a client that sent them and ended its direction) and whose writes are
// discarded. Nothing in it blocks, so a fuzz run has no goroutines of its
// own and its coverage does not depend on scheduling.
type memConn struct {
	r      *bytes.Reader
	closed bool
}

func (c *memConn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *memConn) Close() error                     { c.closed = true; return nil }
func (c *memConn) LocalAddr() net.Addr              { return Addr{} }
func (c *memConn) RemoteAddr() net.Addr             { return Addr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// hijackWriter is the http.ResponseWriter of an upgrade request, handing
// its memConn to the WebSocket library.
type hijackWriter struct {
	header http.Header
	conn   net.Conn
}

func (w *hijackWriter) Header() http.Header         { return w.header }
func (w *hijackWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *hijackWriter) WriteHeader(int)             {}
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

// memAccept returns the server-side Conn of a WebSocket whose client, once
// the opening handshake is done, sends raw verbatim and then ends its
// direction.
func memAccept(t *testing.T, raw []byte) *Conn {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://fuzz.invalid/", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	w := &hijackWriter{header: http.Header{}, conn: &memConn{r: bytes.NewReader(raw)}}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	c := NewWithAddrs(ws, Addr{}, Addr{})
	t.Cleanup(func() { c.Close() })
	return c
}

// framePayloads returns, in order, the unmasked payload bytes of the data
// frames (text, binary, continuation) in a stream of frames, up to the
// first close frame or the end of the input, including what is present of
// a final truncated frame. It is deliberately lenient: it goes on where a
// conforming reader stops (reserved opcodes, masked or fragmented control
// frames, bad continuations), so anything a reader delivers must be a
// prefix of its result.
func framePayloads(b []byte) []byte {
	var out []byte
	for len(b) >= 2 {
		op, masked, n := b[0]&0x0f, b[1]&0x80 != 0, uint64(b[1]&0x7f)
		b = b[2:]
		switch n {
		case 126:
			if len(b) < 2 {
				return out
			}
			n, b = uint64(binary.BigEndian.Uint16(b)), b[2:]
		case 127:
			if len(b) < 8 {
				return out
			}
			n, b = binary.BigEndian.Uint64(b), b[8:]
		}
		var key []byte
		if masked {
			if len(b) < 4 {
				return out
			}
			key, b = b[:4], b[4:]
		}
		p := b[:min(n, uint64(len(b)))]
		b = b[len(p):]
		if op == 0x8 {
			return out
		}
		if op <= 0x2 {
			for i, c := range p {
				if key != nil {
					c ^= key[i%4]
				}
				out = append(out, c)
			}
		}
	}
	return out
}

// FuzzRead feeds arbitrary client bytes to a server-side Conn (the bridge
// server's side, which anyone can reach) after the opening handshake. Read
// must not panic or hang, and must deliver only unmasked frame payload
// bytes, in order: never bytes of a header, of a control frame, of an
// earlier read, or of a partial frame still masked.
func FuzzRead(f *testing.F) {
	key := []byte{1, 2, 3, 4}
	var fragmented []byte
	fragmented = append(fragmented, maskedFrame(false, opBinary, key, []byte("hel"))...)
	fragmented = append(fragmented, maskedFrame(true, 0x9, key, []byte("p"))...) // ping between fragments
	fragmented = append(fragmented, maskedFrame(true, opContinuation, key, []byte("lo"))...)
	fragmented = append(fragmented, maskedFrame(true, 0x1, key, []byte("!"))...) // text message
	f.Add(append(bytes.Clone(fragmented), maskedFrame(true, 0x8, key, []byte{0x03, 0xe8})...))
	f.Add(fragmented[:9])
	f.Add(maskedFrame(true, opBinary, key, bytes.Repeat([]byte{0xaa}, 300)))
	f.Add([]byte{0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5})
	f.Add(frame(true, opBinary, []byte("unmasked")))
	f.Add(append(maskedFrame(false, opBinary, key, []byte("a")), maskedFrame(true, opBinary, key, []byte("b"))...))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c := memAccept(t, raw)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		buf := make([]byte, 7) // small, so that frames are read in pieces
		for {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				if isTimeout(err) {
					t.Fatalf("Read hung on %x", raw)
				}
				break
			}
		}
		if want := framePayloads(raw); !bytes.HasPrefix(want, got) {
			t.Fatalf("read %x from %x; not a prefix of the payloads %x", got, raw, want)
		}
	})
}

// maskedFrame returns a client frame masked with key.
func maskedFrame(fin bool, op byte, key, payload []byte) []byte {
	b := frame(fin, op, nil)
	b[1] |= 0x80
	switch n := len(payload); {
	case n < 126:
		b[1] |= byte(n)
	case n < 1<<16:
		b[1] |= 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] |= 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, key...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// TestReadInterleavedControl: on the server side, a ping between the
// fragments of a message and a normal close leave the data whole, followed
// by io.EOF.
func TestReadInterleavedControl(t *testing.T) {
	key := []byte{9, 8, 7, 6}
	var raw []byte
	raw = append(raw, maskedFrame(false, opBinary, key, []byte("hel"))...)
	raw = append(raw, maskedFrame(true, 0x9, key, []byte("ping"))...)
	raw = append(raw, maskedFrame(false, opContinuation, key, []byte("lo "))...)
	raw = append(raw, maskedFrame(true, opContinuation, key, []byte("world"))...)
	raw = append(raw, maskedFrame(true, 0x8, key, []byte{0x03, 0xe8})...)
	got, err := io.ReadAll(memAccept(t, raw))
	if err != nil || string(got) != "hello world" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
}
