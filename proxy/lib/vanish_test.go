//go:build !js

package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v5"
)

// A client that vanishes without a word (killed, unplugged) leaves the SCTP
// association with no peer: closing the data channel then never completes,
// since the stream reset is never acknowledged. The proxy must still end
// every goroutine of the connection, return the slot and log the
// disconnect, whether the teardown comes from ICE failing (the relay keeps
// sending, as in a download) or from the idle timeout (the relay is quiet).
func TestClientVanishes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream bool // the relay sends without pause
		idle   time.Duration
		ice    bool // short ICE timeouts on the proxy
		cause  string
	}{
		{"download, ICE fails", true, time.Minute, true, errPeerFailed.Error()},
		{"quiet relay, idle timeout", false, 2 * time.Second, false, errIdle.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			tn := newTestNet(t, nil)
			// Once dead is set the virtual network drops every packet,
			// as if the client's machine were gone.
			var dead atomic.Bool
			tn.wan.AddChunkFilter(func(vnet.Chunk) bool { return !dead.Load() })

			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := websocket.Accept(w, r, nil)
				if err != nil {
					return
				}
				defer c.CloseNow()
				ctx := r.Context()
				if tc.stream {
					go func() {
						msg := make([]byte, 16<<10)
						for c.Write(ctx, websocket.MessageBinary, msg) == nil {
						}
					}()
				}
				for {
					if _, _, err := c.Read(ctx); err != nil {
						return
					}
				}
			}))
			defer srv.Close()

			var logs bytes.Buffer
			var logMu sync.Mutex
			b, brokerURL := newFakeBroker(t, time.Second, "ws"+srv.URL[len("http"):]+"/")
			cfg := vnetConfig(tn.proxyNet, brokerURL, "")
			cfg.IdleTimeout = tc.idle
			cfg.Capacity = 1
			cfg.ConcurrentPolls = 1
			cfg.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
			if tc.ice {
				cfg.ConfigureWebRTC = func(se *webrtc.SettingEngine) {
					se.SetNet(tn.proxyNet)
					se.SetICETimeouts(time.Second, 2*time.Second, 250*time.Millisecond)
				}
			}
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			startProxy(t, p)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := dialClient(ctx, t, tn.client, b)
			if err != nil {
				t.Fatal(err)
			}
			// Closed only after the proxy has given up on it.
			defer c.Close()
			if _, err := c.rw.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "client connected", func() bool { return p.Stats().Active.Load() == 1 })
			if tc.stream {
				buf := make([]byte, 1<<16)
				for got := 0; got < 1<<20; {
					n, err := c.rw.Read(buf)
					if err != nil {
						t.Fatalf("download after %d bytes: %v", got, err)
					}
					got += n
				}
			}
			dead.Store(true)
			killed := time.Now()

			waitFor(t, "slot returned", func() bool { return p.Stats().Active.Load() == 0 && p.tokens.count() <= 1 })
			waitFor(t, "disconnect logged", func() bool {
				logMu.Lock()
				defer logMu.Unlock()
				return bytes.Contains(logs.Bytes(), []byte("client disconnected")) &&
					bytes.Contains(logs.Bytes(), []byte(tc.cause))
			})
			t.Logf("slot freed %v after the client vanished", time.Since(killed).Round(100*time.Millisecond))
		})
	}
}
