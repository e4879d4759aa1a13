//go:build !js

package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v5"
)

// fakeClient is the client's side of a detached data channel. Reads come
// from in and then block until Close (or report readErr, or EOF if eof is
// set, at once); writes wait for release and fail once failWrites is set.
type fakeClient struct {
	in         *bytes.Reader
	eof        bool
	readErr    error
	release    chan struct{}
	failWrites bool
	closed     chan struct{}
	closeOnce  sync.Once

	mu  sync.Mutex
	got bytes.Buffer
}

func newFakeClient(in []byte) *fakeClient {
	c := &fakeClient{in: bytes.NewReader(in), release: make(chan struct{}), closed: make(chan struct{})}
	close(c.release)
	return c
}

func (c *fakeClient) Read(b []byte) (int, error) {
	if c.in.Len() > 0 {
		return c.in.Read(b)
	}
	if c.readErr != nil {
		return 0, c.readErr
	}
	if c.eof {
		return 0, io.EOF
	}
	<-c.closed
	return 0, io.EOF
}

func (c *fakeClient) Write(b []byte) (int, error) {
	<-c.release
	if c.failWrites {
		return 0, errors.New("data channel closed")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got.Write(b)
}

func (c *fakeClient) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *fakeClient) received() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got.Len()
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// runRelay dials a WebSocket relay served by serve and relays client to it.
func runRelay(t *testing.T, client *fakeClient, serve func(c *websocket.Conn)) error {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(-1)
		serve(c)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), relayTestLimit)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var st relayStats
	var total Stats
	total.Active.Store(1)
	return relay(ctx, &webrtc.DataChannel{}, client, nopCloser{}, newWSConn(ws), maxDCMessage, relayTestLimit, &st, &total)
}

// relayTestLimit bounds a runRelay, as its context's deadline and as the
// relay's idle timeout. These tests' data channel is an empty one that
// never drains, so the idle timeout counts from the last read from the
// relay, and in TestRelayDeliversAfterClientEnds, where the relay sends only
// its greeting, it bounds the whole 32 MiB upload: with the race detector
// on a loaded 2-core machine that takes over 10 s. Neither limit is what
// these tests check (TestRelayMisbehaves checks the idle timeout).
const relayTestLimit = 2 * time.Minute

// The relay sends its last bytes and closes the TCP connection without a
// close frame, as websocketconn.Conn.Close does; the client is slow, so the
// bytes still wait in the pipe when the WebSocket read fails. They must
// still reach the client.
func TestRelayDeliversAfterRelayDrops(t *testing.T) {
	client := newFakeClient(nil)
	client.release = make(chan struct{})
	const msgs, size = 3, 8 << 10
	dropped := make(chan struct{})
	go func() {
		<-dropped
		time.Sleep(200 * time.Millisecond) // the proxy reads the EOF
		close(client.release)
	}()
	err := runRelay(t, client, func(c *websocket.Conn) {
		for range msgs {
			if err := c.Write(context.Background(), websocket.MessageBinary, make([]byte, size)); err != nil {
				t.Error(err)
			}
		}
		c.CloseNow()
		close(dropped)
	})
	t.Logf("relay ended: %v", err)
	if got := client.received(); got != msgs*size {
		t.Errorf("client received %d bytes, want %d", got, msgs*size)
	}
}

// The client sends a lot and ends; writing the relay's greeting to it
// fails at once. What the proxy already read from the client must still
// reach the relay, which reads it only after a pause.
func TestRelayDeliversAfterClientEnds(t *testing.T) {
	const total = 32 << 20
	client := newFakeClient(make([]byte, total))
	client.eof = true
	client.failWrites = true
	var got int
	served := make(chan struct{})
	runRelay(t, client, func(c *websocket.Conn) {
		defer close(served)
		c.Write(context.Background(), websocket.MessageBinary, []byte("hello"))
		time.Sleep(300 * time.Millisecond)
		got = countUntilError(c)
	})
	<-served
	if got != total {
		t.Errorf("relay received %d bytes, want %d", got, total)
	}
}

// Reading from the client fails (in a browser, its queue overflowed, and
// what came after is lost): what was read before still reaches the relay,
// and the relay reports the failure as why it ended, not as a normal close.
func TestRelayClientReadErrorIsCause(t *testing.T) {
	const total = 1 << 20
	overflow := errors.New("data channel receive queue overflow")
	client := newFakeClient(make([]byte, total))
	client.readErr = overflow
	var got int
	served := make(chan struct{})
	err := runRelay(t, client, func(c *websocket.Conn) {
		defer close(served)
		got = countUntilError(c)
	})
	<-served
	if !errors.Is(err, overflow) {
		t.Errorf("relay ended with %v, want the client read's error", err)
	}
	if got != total {
		t.Errorf("relay received %d bytes, want %d", got, total)
	}
}

// countUntilError reads and drops messages until the connection fails, and
// returns how many bytes they held.
func countUntilError(c *websocket.Conn) int {
	got := 0
	for {
		_, r, err := c.Reader(context.Background())
		if err != nil {
			return got
		}
		n, _ := io.Copy(io.Discard, r)
		got += int(n)
	}
}

// Both sides go at once: the client's channel fails every write, and the
// relay drops its connection while the client still has data for it. Both
// writers then fail, and the relay must report why it ended rather than a
// normal end.
func TestRelayBothSidesFail(t *testing.T) {
	client := newFakeClient(make([]byte, 4<<20))
	client.failWrites = true
	err := runRelay(t, client, func(c *websocket.Conn) {
		c.Write(context.Background(), websocket.MessageBinary, []byte("hello"))
		c.CloseNow()
	})
	if err == nil {
		t.Fatal("relay reported a normal end after both writes failed")
	}
	t.Logf("relay ended: %v", err)
}
