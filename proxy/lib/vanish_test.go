//go:build !js

package proxy

import (
	"context"
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

			srv, relayURL := startWSRelay(func(ctx context.Context, c *websocket.Conn) {
				if tc.stream {
					go func() {
						msg := make([]byte, 16<<10)
						for c.Write(ctx, websocket.MessageBinary, msg) == nil {
						}
					}()
				}
				readUntilError(ctx, c)
			})
			defer srv.Close()

			var logs logBuffer
			// Closed (by the test's cleanup) only after the proxy has
			// given up on it.
			p, c := startOneClient(t, tn, relayURL, func(cfg *Config) {
				cfg.IdleTimeout = tc.idle
				cfg.ConcurrentPolls = 1
				cfg.Logger = logs.logger()
				if tc.ice {
					cfg.ConfigureWebRTC = func(se *webrtc.SettingEngine) {
						se.SetNet(tn.proxyNet)
						se.SetICETimeouts(time.Second, 2*time.Second, 250*time.Millisecond)
					}
				}
			})
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
			waitFor(t, "disconnect logged", func() bool { return logs.contains("client disconnected", tc.cause) })
			t.Logf("slot freed %v after the client vanished", time.Since(killed).Round(100*time.Millisecond))
		})
	}
}
