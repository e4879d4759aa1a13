//go:build !js

package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
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

// The proxy's answer announces a max-message-size (Chromium's 256 KiB in
// the browser-like DTLS modes), so a client may send messages that large.
// Such a message must be relayed, not end the connection; one larger than
// the proxy will take ends it with an error that says why.
func TestLargeClientMessage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		relayed bool
	}{
		{"under 64 KiB", 60 << 10, true},
		{"over 64 KiB", 100 << 10, true},
		{"largest announced", maxClientMessage, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			tn := newTestNet(t, nil)
			_, relayURL := newEchoRelay(t)
			var logs logBuffer
			p, c := startOneClient(t, tn, relayURL, func(cfg *Config) {
				cfg.ConcurrentPolls = 1
				cfg.Logger = logs.logger()
			})
			msg := make([]byte, tc.size)
			rand.Read(msg)
			if _, err := c.rw.Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 0, tc.size)
			buf := make([]byte, 1<<16)
			for len(got) < tc.size {
				n, err := c.rw.Read(buf)
				if err != nil {
					t.Fatalf("read after %d of %d bytes: %v\n%s", len(got), tc.size, err, logs.String())
				}
				got = append(got, buf[:n]...)
			}
			if !bytes.Equal(got, msg) {
				t.Fatal("echo differs from the message sent")
			}
			if p.Stats().BytesUp.Load() != int64(tc.size) {
				t.Errorf("bytes up = %d, want %d", p.Stats().BytesUp.Load(), tc.size)
			}
		})
	}
}

// A client may announce a max-message-size below the 64 KiB messages the
// proxy coalesces (RFC 8841 allows any size). pion refuses to send it a
// longer message, so the proxy must send it messages no longer than it
// announced, or everything the relay sends is lost.
func TestClientSmallMaxMessageSize(t *testing.T) {
	checkGoroutines(t)
	tn := newTestNet(t, nil)
	_, relayURL := newEchoRelay(t)
	const announced = 16 << 10
	_, c := startOneClientWith(t, tn, relayURL, func(cfg *Config) {
		// Without the fix nothing comes back, and the idle timeout ends
		// the connection: a short one makes the test fail sooner.
		cfg.IdleTimeout = 5 * time.Second
	}, func(se *webrtc.SettingEngine) {
		se.SetSCTPMaxMessageSize(announced)
	})
	if !strings.Contains(c.pc.LocalDescription().SDP, fmt.Sprintf("a=max-message-size:%d", announced)) {
		t.Fatalf("the client's offer does not announce max-message-size %d", announced)
	}
	// 1 MiB in 1400-byte messages: the relay echoes them in messages of up
	// to 32 KiB, which the proxy would coalesce to 64 KiB.
	c.exchange(t, 1<<20)
}

// A client uploads to a relay that has stopped reading, and then leaves,
// closing its peer connection. What it sent still waits in the proxy's pipe
// to the relay, so the reader of its data channel, blocked on that pipe,
// cannot see the close. The slot must still come back within seconds (the
// relay has deliverTimeout to take what is left), not when ICE gives up on
// the departed client.
func TestStalledRelayClientLeaves(t *testing.T) {
	checkGoroutines(t)
	tn := newTestNet(t, nil)
	srv, relayURL := startWSRelay(func(ctx context.Context, c *websocket.Conn) {
		<-ctx.Done() // reads nothing
	})
	defer srv.Close()
	p, c := startOneClient(t, tn, relayURL, func(cfg *Config) {
		cfg.IdleTimeout = time.Minute
		cfg.ConcurrentPolls = 1
	})
	go func() {
		msg := make([]byte, 1400)
		for sent := 0; sent < 64<<20; sent += len(msg) {
			if _, err := c.rw.Write(msg); err != nil {
				return
			}
		}
	}()
	waitFor(t, "client connected", func() bool { return p.Stats().Active.Load() == 1 })
	// The relay's side is full once the proxy has taken nothing from the
	// client for a second.
	last, still := int64(-1), time.Now()
	waitFor(t, "the upload stalled", func() bool {
		if up := p.Stats().BytesUp.Load(); up != last {
			last, still = up, time.Now()
		}
		time.Sleep(100 * time.Millisecond)
		return last > 1<<20 && time.Since(still) > time.Second
	})
	t.Logf("the proxy took %d bytes from the client before the relay's side was full", last)

	c.pc.Close()
	left := time.Now()
	waitFor(t, "slot returned", func() bool { return p.Stats().Active.Load() == 0 })
	took := time.Since(left)
	t.Logf("slot freed %v after the client left", took.Round(100*time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("slot freed %v after the client left, want within 10s", took.Round(100*time.Millisecond))
	}
}
