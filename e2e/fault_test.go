package e2e

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/bench/chain"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// resumingDownload downloads [0, size) of pattern seed through cl, hashing
// into h. A stream that fails or stalls for stall is closed and the
// download resumes at the next byte on a new stream, at most retries times.
// It returns how many new streams were needed.
func resumingDownload(ctx context.Context, cl *chain.Client, seed, size uint64, h hash.Hash, stall time.Duration, retries int, progress func(uint64)) (int, error) {
	var got uint64
	for attempt := 0; ; attempt++ {
		sctx, cancel := context.WithCancel(ctx)
		conn, err := cl.Dial(sctx)
		if err == nil {
			var last atomic.Int64
			last.Store(time.Now().UnixNano())
			done := make(chan struct{})
			go func() {
				t := time.NewTicker(500 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-done:
						return
					case <-t.C:
						if time.Since(time.Unix(0, last.Load())) > stall {
							cancel()
							return
						}
					}
				}
			}()
			var n uint64
			cur := got
			n, err = chain.Download(sctx, conn, seed, got, size, h, func(k int) {
				last.Store(time.Now().UnixNano())
				cur += uint64(k)
				if progress != nil {
					progress(cur)
				}
			})
			got += n
			close(done)
			conn.Close()
		}
		cancel()
		if err == nil {
			return attempt, nil
		}
		if ctx.Err() != nil || attempt >= retries {
			return attempt, fmt.Errorf("after %d of %d bytes and %d retries: %w", got, size, attempt, err)
		}
	}
}

// TestServerRestart kills the bridge server a third of the way into a
// download and starts it again on the same address. The client must
// recover: the download completes on new streams that resume where the old
// one stopped, with the right SHA-256. The old stream does not finish it:
// beyond what the test has read, only the server's smux window (1 MiB),
// what waits in the SOCKS connection's socket buffers (little, as the test
// reads without pause) and a few packets in the proxy are on the way,
// far less than the 16 MiB left, so at least one new stream through the
// restarted server is required.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	bin := buildAll(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startChain(t, ctx, bin, chain.Config{})
	for range 2 {
		if _, err := c.StartProxy(ctx, chain.ProxyConfig{Path: bin.proxy, Flavor: chain.Ours}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitProxies(ctx, 2); err != nil {
		t.Fatal(err)
	}
	cl, err := c.StartClient(ctx, chain.ClientConfig{Path: bin.client})
	if err != nil {
		t.Fatal(err)
	}
	const size = 24 << 20
	const seed = 11
	restarted := make(chan error, 1)
	var once atomic.Bool
	h := sha256.New()
	retries, err := resumingDownload(ctx, cl, seed, size, h, 8*time.Second, 4, func(got uint64) {
		if got >= size/3 && once.CompareAndSwap(false, true) {
			go func() {
				c.Server.Kill()
				t.Logf("server killed at %d bytes", got)
				restarted <- c.StartServer(ctx)
			}()
		}
	})
	// The restart goroutine logs and starts a server: it must be done
	// before the test can end (t.Logf after the end panics, and a server
	// started after the chain's cleanup would never be stopped).
	var restartErr error
	if once.Load() {
		restartErr = <-restarted
	}
	if err != nil {
		t.Fatalf("download across a server restart: %v", err)
	}
	if !once.Load() {
		t.Fatal("the server was never restarted")
	}
	if restartErr != nil {
		t.Fatalf("restart server: %v", restartErr)
	}
	checkSum(t, h.Sum(nil), seed, size)
	if retries == 0 {
		t.Fatal("the download completed on its first stream: the restarted server carried none of it")
	}
	t.Logf("download completed across a server restart with %d new stream(s)", retries)
}

// TestBrokerRestart restarts the broker between two rendezvous: proxies
// must come back to it and a new rendezvous must succeed.
func TestBrokerRestart(t *testing.T) {
	t.Parallel()
	bin := buildAll(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startChain(t, ctx, bin, chain.Config{})
	p, err := c.StartProxy(ctx, chain.ProxyConfig{Path: bin.proxy, Flavor: chain.Ours})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitProxies(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cl, err := c.StartClient(ctx, chain.ClientConfig{Path: bin.client})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chain.EchoOnce(ctx, cl); err != nil {
		t.Fatalf("rendezvous before the restart: %v", err)
	}
	if err := c.RestartBroker(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.WaitProxies(ctx, 1); err != nil {
		t.Fatalf("proxy did not come back to the restarted broker: %v\n%s", err, p.Tail(20))
	}
	t.Logf("proxy polling the new broker after %v", time.Since(start).Round(time.Millisecond))
	d, err := chain.EchoOnce(ctx, cl)
	if err != nil {
		t.Fatalf("rendezvous after the restart: %v", err)
	}
	t.Logf("rendezvous after the broker restart: %v", d.Round(time.Millisecond))
	download(t, ctx, cl, 12, 2<<20)
}

// TestClientDisappears ends a client in the middle of a download, once by
// SIGKILL and once by SIGTERM (what tor sends when it exits). The proxy
// must drop it and the server must close its WebSocket, as their metrics
// show. A killed client says nothing, so that takes until ICE declares it
// failed (about 30 s); one that exits must tell the proxy on its way out,
// so a volunteer's proxy frees the slot at once.
func TestClientDisappears(t *testing.T) {
	t.Parallel()
	bin := buildAll(t)
	for _, tc := range []struct {
		name  string
		end   func(*chain.Client) error
		bound time.Duration // for the proxy and the server to let go
	}{
		// The bound allows three times ICE's 30 s.
		{"killed", func(cl *chain.Client) error { cl.Kill(); return nil }, 90 * time.Second},
		// The client closes its peer connections before it exits; only
		// the proxy's and the server's reaction take time.
		{"exits", func(cl *chain.Client) error { return cl.Signal(syscall.SIGTERM) }, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clientGoes(t, bin, tc.end, tc.bound)
		})
	}
}

func clientGoes(t *testing.T, bin binaries, end func(*chain.Client) error, bound time.Duration) {
	// The chain, the rendezvous and the first megabyte have a budget of
	// their own (they took 28 s on a loaded two-core machine, where the
	// other e2e tests run at the same time).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startChain(t, ctx, bin, chain.Config{ServerMetrics: true})
	mport := testenv.FreePort(t)
	p, err := c.StartProxy(ctx, chain.ProxyConfig{Path: bin.proxy, Flavor: chain.Ours,
		Args: []string{"-metrics", "-metrics-address", "127.0.0.1", "-metrics-port", fmt.Sprint(mport)}})
	if err != nil {
		t.Fatal(err)
	}
	proxyMetrics := fmt.Sprintf("http://127.0.0.1:%d/internal/metrics", mport)
	if err := c.WaitProxies(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cl, err := c.StartClient(ctx, chain.ClientConfig{Path: bin.client})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := cl.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Read a little of an endless download, then end the client.
	var got atomic.Uint64
	dctx, dcancel := context.WithCancel(ctx)
	defer dcancel()
	go chain.Download(dctx, conn, 13, 0, chain.MaxDownload, sha256.New(), func(k int) { got.Add(uint64(k)) })
	for got.Load() < 1<<20 {
		select {
		case <-ctx.Done():
			t.Fatalf("download did not start: %v", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	gauge := func(url, name string) float64 {
		m, err := chain.ScrapeMetrics(ctx, url)
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		return m.Sum(name)
	}
	if n := gauge(proxyMetrics, "tor_snowflake_proxy_active_connections"); n != 1 {
		t.Fatalf("proxy active connections during the download = %v, want 1", n)
	}
	if n := gauge(c.ServerMetricsURL(), "snowflake_server_websocket_connections"); n != 1 {
		t.Fatalf("server WebSocket connections during the download = %v, want 1", n)
	}
	if err := end(cl); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	t.Logf("client ended after %d bytes", got.Load())
	wctx, wcancel := context.WithTimeout(ctx, bound)
	defer wcancel()
	waitZero := func(what, url, name string) {
		for {
			v := gauge(url, name)
			if v == 0 {
				t.Logf("%s back to 0 after %v", what, time.Since(ended).Round(time.Millisecond))
				return
			}
			select {
			case <-wctx.Done():
				t.Fatalf("%s still %v %v after the client ended\nproxy:\n%s\nclient:\n%s", what, v, time.Since(ended), p.Tail(20), cl.Tail(20))
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	waitZero("proxy active connections", proxyMetrics, "tor_snowflake_proxy_active_connections")
	waitZero("server WebSocket connections", c.ServerMetricsURL(), "snowflake_server_websocket_connections")
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("timed out")
	}
}

// TestGarbageProxy serves the client through a proxy that slips garbage
// packets (random well-framed chunks and runts) into the data channel. The
// client must drop them and keep its session: the download completes on
// its one stream, intact.
func TestGarbageProxy(t *testing.T) {
	t.Parallel()
	bin := buildAll(t)
	bad := testenv.Binary(t, "./e2e/internal/badproxy")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startChain(t, ctx, bin, chain.Config{})
	bp, err := c.StartOther("badproxy", bad, "-broker", c.BrokerURL, "-relay", c.ServerWS, "-stun", c.STUN.URL(), "-every", "10")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitProxies(ctx, 1); err != nil {
		t.Fatalf("%v\n%s", err, bp.Tail(20))
	}
	cl, err := c.StartClient(ctx, chain.ClientConfig{Path: bin.client})
	if err != nil {
		t.Fatal(err)
	}
	download(t, ctx, cl, 21, 4<<20)
	if !bp.Seen("client connected") {
		t.Fatal("the bad proxy did not carry the session")
	}
	cl.Stop(5 * time.Second)
	line, err := bp.WaitFor(ctx, "injected ")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if _, err := fmt.Sscanf(line, "injected %d garbage packets", &n); err != nil || n == 0 {
		t.Fatalf("bad proxy reported %q; want some garbage injected", line)
	}
	t.Logf("client survived: %s", line)
}
