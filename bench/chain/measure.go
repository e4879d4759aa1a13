package chain

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"sort"
	"time"
)

// Dialer opens a stream through a client.
type Dialer interface {
	Dial(ctx context.Context) (net.Conn, error)
}

// EchoOnce opens a stream, sends one byte to the sink's echo service and
// waits for it to come back. The duration covers the whole rendezvous when
// the client has no session yet.
func EchoOnce(ctx context.Context, d Dialer) (time.Duration, error) {
	conn, took, err := DialEcho(ctx, d)
	if err != nil {
		return 0, err
	}
	conn.Close()
	return took, nil
}

// DialEcho is [EchoOnce] that leaves the stream open (the sink echoes
// until it is closed); the caller closes it.
func DialEcho(ctx context.Context, d Dialer) (net.Conn, time.Duration, error) {
	start := time.Now()
	conn, err := d.Dial(ctx)
	if err != nil {
		return nil, 0, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := conn.Write([]byte{OpEcho, 'x'}); err != nil {
		conn.Close()
		return nil, 0, fmt.Errorf("chain: echo: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, 0, fmt.Errorf("chain: echo: %w", err)
	}
	if b[0] != 'x' {
		conn.Close()
		return nil, 0, fmt.Errorf("chain: echo: got %q back, sent 'x'", b[0])
	}
	return conn, time.Since(start), nil
}

// RTT measures n sequential 1-byte echo round trips on one stream and
// returns their sorted durations.
func RTT(ctx context.Context, d Dialer, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	err := echoRounds(ctx, d, func(rtt time.Duration) bool {
		out = append(out, rtt)
		return len(out) < n
	})
	if err != nil {
		return nil, fmt.Errorf("chain: rtt: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// Warm runs echo round trips on one stream for d, measuring nothing, so
// that RTT samples taken next see a machine that has been busy with this
// traffic. d <= 0 does nothing.
func Warm(ctx context.Context, d Dialer, dur time.Duration) error {
	if dur <= 0 {
		return nil
	}
	end := time.Now().Add(dur)
	if err := echoRounds(ctx, d, func(time.Duration) bool { return time.Now().Before(end) }); err != nil {
		return fmt.Errorf("chain: warm: %w", err)
	}
	return nil
}

// echoRounds opens a stream to the echo service and makes 1-byte round
// trips on it, passing each one's duration to more, until more reports
// false.
func echoRounds(ctx context.Context, d Dialer, more func(time.Duration) bool) error {
	conn, err := d.Dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := conn.Write([]byte{OpEcho}); err != nil {
		return err
	}
	var b [1]byte
	for i := 0; ; i++ {
		t := time.Now()
		if _, err := conn.Write([]byte{byte(i)}); err != nil {
			return err
		}
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			return err
		}
		if b[0] != byte(i) {
			return fmt.Errorf("echoed %d, sent %d", b[0], byte(i))
		}
		if !more(time.Since(t)) {
			return nil
		}
	}
}

// Percentile returns the p-th percentile (0..100) of sorted durations by
// nearest rank: the smallest sample that at least p% of them do not exceed.
// Rounding the rank up matters with few samples, where rounding down would
// report a middle round trip (of 3 samples, the median) as the p99.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// p*n/100 rather than p/100*n: 99*300/100 is exactly 297.
	rank := int(math.Ceil(p * float64(len(sorted)) / 100))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
