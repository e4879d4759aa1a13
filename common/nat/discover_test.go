package nat

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/snowflake-go/snowflake/internal/stunserver"
)

func TestParseSTUNURL(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"stun:127.0.0.1:3478", "127.0.0.1:3478", true},
		{"stun:127.0.0.1", "127.0.0.1:3478", true},
		{"stun:stun.example:19302", "stun.example:19302", true},
		{"stun:[::1]:5000", "[::1]:5000", true},
		{"stun:[::1]", "[::1]:3478", true},
		{"stun:host?transport=udp", "host:3478", true},
		{"stuns:127.0.0.1:5349", "", false},
		{"turn:127.0.0.1:3478", "", false},
		{"127.0.0.1:3478", "", false},
		{"stun:", "", false},
		{"stun::3478", "", false},
		{"stun:127.0.0.1:0", "", false},
		{"stun:127.0.0.1:99999", "", false},
		{"stun:127.0.0.1:abc", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSTUNURL(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseSTUNURL(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseSTUNURL(f *testing.F) {
	for _, s := range []string{"stun:127.0.0.1:3478", "stun:[::1]", "stun:a?b", "turn:x", "stun::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hp, err := ParseSTUNURL(s)
		if err != nil {
			return
		}
		if _, _, err := net.SplitHostPort(hp); err != nil {
			t.Fatalf("ParseSTUNURL(%q) = %q, not host:port", s, hp)
		}
	})
}

// TestDiscoverUnrestricted: on loopback there is no NAT, so both RFC 5780
// tests see the same mapping.
func TestDiscoverUnrestricted(t *testing.T) {
	srv, err := stunserver.Listen("127.0.0.1", "127.0.0.2")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := Discover(ctx, nil, []string{"turn:127.0.0.1:1", srv.URL()}, nil)
	if err != nil || got != Unrestricted {
		t.Fatalf("Discover = %v, %v; want unrestricted", got, err)
	}
}

// plainSTUN answers binding requests with XOR-MAPPED-ADDRESS only, like a
// server that does not implement RFC 5780. If otherAddr is set it claims
// OTHER-ADDRESS otherAddr and reports mapped port+delta there, imitating an
// address-dependent NAT.
func plainSTUN(t *testing.T, other *net.UDPConn, delta int) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	serve := func(c *net.UDPConn, withOther bool, d int) {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil {
				continue
			}
			setters := []stun.Setter{stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: from.IP, Port: from.Port + d}}
			if withOther && other != nil {
				oa := other.LocalAddr().(*net.UDPAddr)
				setters = append(setters, &stun.OtherAddress{IP: oa.IP, Port: oa.Port})
			}
			resp, err := stun.Build(setters...)
			if err != nil {
				continue
			}
			c.WriteToUDP(resp.Raw, from)
		}
	}
	go serve(c, true, 0)
	if other != nil {
		go serve(other, false, delta)
	}
	return c
}

func TestDiscoverRestricted(t *testing.T) {
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	srv := plainSTUN(t, other, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := Discover(ctx, nil, []string{"stun:" + srv.LocalAddr().String()}, nil)
	if err != nil || got != Restricted {
		t.Fatalf("Discover = %v, %v; want restricted", got, err)
	}
}

func TestDiscoverNoOtherAddress(t *testing.T) {
	srv := plainSTUN(t, nil, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := Discover(ctx, nil, []string{"stun:" + srv.LocalAddr().String()}, nil)
	if got != Unknown || !errors.Is(err, ErrNoUsableServer) || !errors.Is(err, ErrNoOtherAddress) {
		t.Fatalf("Discover = %v, %v; want unknown with ErrNoOtherAddress", got, err)
	}
}

func TestDiscoverSilentServer(t *testing.T) {
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	got, err := Discover(ctx, nil, []string{"stun:" + silent.LocalAddr().String(), "turn:127.0.0.1:1"}, nil)
	if got != Unknown || err == nil {
		t.Fatalf("Discover = %v, %v; want unknown and an error", got, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Discover ignored its context: took %v", d)
	}
}

// cancelNet is the operating system's network, except that its UDP
// sockets cancel a context in the middle of one SetReadDeadline call: after
// the cancellation's own deadline (Discover's AfterFunc) has been set, but
// before the deadline of that call is applied. That is the moment a
// cancellation can arrive between Discover's check of the context and its
// next read.
type cancelNet struct {
	transport.Net
	cancel  context.CancelFunc
	atCall  int // which SetReadDeadline call with a future deadline cancels
	expired chan struct{}
}

func (n *cancelNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &cancelConn{UDPConn: c, n: n}, nil
}

type cancelConn struct {
	transport.UDPConn
	n     *cancelNet
	mu    sync.Mutex
	calls int
}

func (c *cancelConn) SetReadDeadline(t time.Time) error {
	if t.Before(time.Now()) {
		// The cancellation's deadline.
		err := c.UDPConn.SetReadDeadline(t)
		close(c.n.expired)
		return err
	}
	c.mu.Lock()
	c.calls++
	cancelNow := c.calls == c.n.atCall
	c.mu.Unlock()
	if cancelNow {
		c.n.cancel()
		select {
		case <-c.n.expired:
		case <-time.After(5 * time.Second):
		}
	}
	return c.UDPConn.SetReadDeadline(t)
}

// TestDiscoverCancelBetweenReads cancels Discover while it is about to wait
// for a retransmitted request's answer (1 s). It must return promptly, not
// when that wait ends.
func TestDiscoverCancelBetweenReads(t *testing.T) {
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	std, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	n := &cancelNet{Net: std, atCall: 2, expired: make(chan struct{}),
		cancel: func() { cancelled = time.Now(); cancel() }}
	got, err := Discover(ctx, n, []string{"stun:" + silent.LocalAddr().String()}, nil)
	if got != Unknown || !errors.Is(err, context.Canceled) {
		t.Fatalf("Discover = %v, %v; want unknown and context.Canceled", got, err)
	}
	if d := time.Since(cancelled); d > 400*time.Millisecond {
		t.Fatalf("Discover returned %v after its context was cancelled", d)
	}
}

// slowDNSNet is the operating system's network whose name lookups hang
// until released, as they do where a censor drops DNS.
type slowDNSNet struct {
	transport.Net
	release chan struct{}
}

func (n *slowDNSNet) ResolveUDPAddr(network, address string) (*net.UDPAddr, error) {
	<-n.release
	return nil, errors.New("lookup timed out")
}

// TestDiscoverCancelDuringLookup: transport.Net's lookups take no context,
// and a blocked one must not hold Discover (and so a client's shutdown)
// past its context.
func TestDiscoverCancelDuringLookup(t *testing.T) {
	std, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	n := &slowDNSNet{Net: std, release: make(chan struct{})}
	defer close(n.release)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	got, err := Discover(ctx, n, []string{"stun:stun.example.net:3478"}, nil)
	if got != Unknown || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Discover = %v, %v; want unknown and context.DeadlineExceeded", got, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Discover waited %v for a lookup after its context ended", d)
	}
}

func TestCheckICEURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"stun:stun.l.google.com:19302", true},
		{"stun:198.51.100.1", true},
		{"stun:[2001:db8::1]:3478", true},
		{"stuns:stun.example:5349", true},
		{"stun:stun.example:3478?transport=udp", true},
		{"stun:2001:db8::1", false},
		{"stun:a.example:3478/path", false},
		{"stun.l.google.com:19302", false},
		{"stun:", false},
		{"stun:[::1", false},
		{"http://stun.example/", false},
		{"turn:turn.example:3478", false},
		{"turns:turn.example:5349", false},
	} {
		if err := CheckICEURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("CheckICEURL(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}
