package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/bench/chain"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// binaries are this module's four programs, built for the test (with -race
// when the test is).
type binaries struct{ server, broker, proxy, client string }

func buildAll(t *testing.T) binaries {
	t.Helper()
	return binaries{
		server: testenv.Binary(t, "./server"),
		broker: testenv.Binary(t, "./broker"),
		proxy:  testenv.Binary(t, "./proxy"),
		client: testenv.Binary(t, "./client"),
	}
}

// startChain starts STUN, sink, server and broker; everything is stopped at
// cleanup, and the logs of every process are shown if the test failed.
func startChain(t *testing.T, ctx context.Context, bin binaries, cfg chain.Config) *chain.Chain {
	t.Helper()
	cfg.Dir = t.TempDir()
	cfg.Server, cfg.Broker = bin.server, bin.broker
	c, err := chain.Start(ctx, cfg)
	if c != nil || err == nil {
		t.Cleanup(func() { closeChain(t, c) })
	}
	if err != nil {
		t.Fatalf("start chain: %v", err)
	}
	return c
}

func closeChain(t *testing.T, c *chain.Chain) {
	c.Close()
	if t.Failed() {
		for _, p := range c.Procs() {
			t.Logf("--- last lines of %s ---\n%s", p.Name, p.Tail(60))
		}
	}
}

// download fetches size bytes of pattern seed through d and checks their
// SHA-256 against the independently computed one.
func download(t *testing.T, ctx context.Context, d chain.Dialer, seed, size uint64) time.Duration {
	t.Helper()
	start := time.Now()
	conn, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf("dial through client: %v", err)
	}
	defer conn.Close()
	h := sha256.New()
	if _, err := chain.Download(ctx, conn, seed, 0, size, h, nil); err != nil {
		t.Fatalf("download: %v", err)
	}
	el := time.Since(start)
	checkSum(t, h.Sum(nil), seed, size)
	t.Logf("downloaded %d bytes in %v (%.1f MB/s), SHA-256 ok", size, el.Round(time.Millisecond), float64(size)/1e6/el.Seconds())
	return el
}

func checkSum(t *testing.T, got []byte, seed, size uint64) {
	t.Helper()
	want := chain.Pattern{Seed: seed}.SHA256(size)
	if fmt.Sprintf("%x", got) != fmt.Sprintf("%x", want) {
		t.Fatalf("SHA-256 mismatch: got %x, want %x", got, want)
	}
}
