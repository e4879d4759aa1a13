//go:build !js

package websocketconn

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// pair returns a client Conn and the server-side *websocket.Conn, over a
// loopback HTTP server.
func pair(t *testing.T) (*Conn, *websocket.Conn) {
	t.Helper()
	srvc := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		srvc <- ws
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := NewWithAddrs(ws, Addr{}, Addr{})
	t.Cleanup(func() { c.Close() })
	s := <-srvc
	t.Cleanup(func() { s.CloseNow() })
	return c, s
}

func TestReadBinaryAndText(t *testing.T) {
	c, s := pair(t)
	ctx := context.Background()
	big := bytes.Repeat([]byte("z"), 100*1024) // above the library's default limit
	go func() {
		s.Write(ctx, websocket.MessageBinary, []byte("bin"))
		s.Write(ctx, websocket.MessageText, []byte("text"))
		s.Write(ctx, websocket.MessageBinary, []byte{})
		s.Write(ctx, websocket.MessageBinary, big)
		s.Close(websocket.StatusNormalClosure, "")
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	want := append([]byte("bintext"), big...)
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d", len(got), len(want))
	}
}

func TestWriteOneMessageEach(t *testing.T) {
	c, s := pair(t)
	for _, m := range []string{"a", "bc", strings.Repeat("d", 5000)} {
		if n, err := c.Write([]byte(m)); err != nil || n != len(m) {
			t.Fatalf("Write = %d, %v", n, err)
		}
		typ, p, err := s.Read(context.Background())
		if err != nil || typ != websocket.MessageBinary || string(p) != m {
			t.Fatalf("server read %v %q %v", typ, p, err)
		}
	}
}

func TestStreamBothWays(t *testing.T) {
	c, s := pair(t)
	sc := New(s)
	const size = 4 << 20
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	errc := make(chan error, 2)
	go func() {
		// Echo everything back, in whatever pieces the reads return.
		_, err := io.CopyN(sc, sc, size)
		errc <- err
	}()
	go func() {
		for off := 0; off < size; off += 3000 {
			if _, err := c.Write(data[off:min(off+3000, size)]); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	h := sha256.New()
	if _, err := io.CopyN(h, c, size); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if [32]byte(h.Sum(nil)) != want {
		t.Fatal("SHA-256 mismatch")
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	c, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c.Close() // idempotent
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// TestPeerAbortIsEOF: a peer that drops the TCP connection between
// messages (as gorilla/websocket's Close does) ends the stream cleanly.
func TestPeerAbortIsEOF(t *testing.T) {
	c, s := pair(t)
	s.Write(context.Background(), websocket.MessageBinary, []byte("last"))
	s.CloseNow()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
}

func TestReadDeadline(t *testing.T) {
	c, _ := pair(t)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("deadline took %v", d)
	}
}

// TestBuildsForJS keeps the package buildable for browsers (proxy-wasm).
func TestBuildsForJS(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not available")
	}
	cmd := exec.Command(goBin, "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=js build: %v\n%s", err, out)
	}
}

// TestWriteDeadline: a peer that does not read makes writes block; the
// deadline ends them with a timeout error (and closes the connection).
func TestWriteDeadline(t *testing.T) {
	c, _ := pair(t) // the server side never reads
	buf := make([]byte, 64*1024)
	start := time.Now()
	var err error
	for time.Since(start) < 30*time.Second {
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err = c.Write(buf); err != nil {
			break
		}
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Write = %v, want a timeout", err)
	}
}
