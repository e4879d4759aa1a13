//go:build !js

package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// relayServer serves a WebSocket relay that sends total bytes of a
// pattern in messages of msgSize, then closes normally.
func relayServer(t testing.TB, total, msgSize int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		msg := make([]byte, msgSize)
		for sent := 0; sent < total; sent += len(msg) {
			for i := range msg {
				msg[i] = byte((sent + i) * 7)
			}
			if err := c.Write(r.Context(), websocket.MessageBinary, msg[:min(msgSize, total-sent)]); err != nil {
				return
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// readAll reads every message from ws the way relay does (one Reader per
// message, 64 KiB reads) into h.
func readAll(ctx context.Context, ws *websocket.Conn, h io.Writer) (int, error) {
	buf := make([]byte, readBuf)
	got := 0
	for {
		_, r, err := ws.Reader(ctx)
		if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		n, err := io.CopyBuffer(h, r, buf)
		got += int(n)
		if err != nil {
			return got, err
		}
	}
}

// TestRelayDialCarriesBytes checks that the buffered relay connection
// delivers a stream of messages intact, over plain and TLS WebSockets.
func TestRelayDialCarriesBytes(t *testing.T) {
	const total, msgSize = 3<<20 + 123, 8 << 10
	want := sha256.New()
	msg := make([]byte, msgSize)
	for sent := 0; sent < total; sent += msgSize {
		m := msg[:min(msgSize, total-sent)]
		for i := range m {
			m[i] = byte((sent + i) * 7)
		}
		want.Write(m)
	}
	plain := relayServer(t, total, msgSize)
	tlsSrv := httptest.NewUnstartedServer(plain.Config.Handler)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)

	for _, tc := range []struct {
		name string
		url  string
		opts func() *websocket.DialOptions
	}{
		{"ws", "ws" + strings.TrimPrefix(plain.URL, "http"), relayDialOptions},
		{"wss", "wss" + strings.TrimPrefix(tlsSrv.URL, "https"), func() *websocket.DialOptions {
			o := relayDialOptions()
			// Trust the test server's certificate, keeping our dialer.
			o.HTTPClient.Transport.(*http.Transport).TLSClientConfig = tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig
			return o
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, tc.url, tc.opts())
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			ws.SetReadLimit(wsReadLimit)
			h := sha256.New()
			n, err := readAll(ctx, ws, h)
			if err != nil {
				t.Fatalf("after %d bytes: %v", n, err)
			}
			if n != total || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
				t.Fatalf("got %d bytes, SHA-256 %x; want %d bytes, %x", n, h.Sum(nil), total, want.Sum(nil))
			}
		})
	}
}

// readSyscalls returns the read system calls this process has made
// (Linux; -1 elsewhere).
func readSyscalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		var v int64
		if _, err := fmt.Sscanf(l, "syscr: %d", &v); err == nil {
			return v
		}
	}
	return -1
}

// BenchmarkRelayDownload receives 4 MiB in 8 KiB messages (the bridge
// server's batch size) through a relay connection dialled as the proxy
// does, and without the read buffer (coder/websocket's defaults). It
// reports the read system calls per op, which the buffer is there to cut
// (both ends are in this process; the relay side reads only its
// handshake).
func BenchmarkRelayDownload(b *testing.B) {
	const total, msgSize = 4 << 20, 8 << 10
	srv := relayServer(b, total, msgSize)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	for _, bc := range []struct {
		name string
		opts *websocket.DialOptions
	}{{"plain", nil}, {"buffered", relayDialOptions()}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(total)
			ctx := context.Background()
			start := readSyscalls()
			for b.Loop() {
				ws, _, err := websocket.Dial(ctx, url, bc.opts)
				if err != nil {
					b.Fatal(err)
				}
				ws.SetReadLimit(wsReadLimit)
				if n, err := readAll(ctx, ws, io.Discard); err != nil || n != total {
					b.Fatalf("read %d bytes: %v", n, err)
				}
				ws.CloseNow()
			}
			if start >= 0 {
				b.ReportMetric(float64(readSyscalls()-start)/float64(b.N), "reads/op")
			}
		})
	}
}
