package nat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// RoundTripTimeout bounds one STUN request and its retransmissions. RFC 5780
// servers that do not answer within it are skipped.
const RoundTripTimeout = 10 * time.Second

// Errors returned by [Discover] and [ParseSTUNURL].
var (
	// ErrNoUsableServer means no STUN server completed both RFC 5780 tests,
	// so the NAT type could not be determined.
	ErrNoUsableServer = errors.New("nat: no STUN server supports RFC 5780 NAT discovery")
	// ErrNoOtherAddress means a server answered without OTHER-ADDRESS, so it
	// cannot take part in the mapping test.
	ErrNoOtherAddress = errors.New("nat: STUN response has no OTHER-ADDRESS")
)

// ParseSTUNURL returns the UDP host:port of a "stun:host[:port]" URL (default
// port 3478). Other schemes, including "stuns:" and "turn:", are refused.
func ParseSTUNURL(s string) (string, error) {
	rest, ok := strings.CutPrefix(s, "stun:")
	if !ok {
		return "", fmt.Errorf("nat: %q is not a stun: URL", s)
	}
	if i := strings.IndexAny(rest, "?/"); i >= 0 {
		rest = rest[:i]
	}
	host, port := rest, "3478"
	if h, p, err := net.SplitHostPort(rest); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") {
		host = rest[1 : len(rest)-1]
	}
	if host == "" {
		return "", fmt.Errorf("nat: %q has no host", s)
	}
	if strings.ContainsAny(host, "[]@ \t") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
		return "", fmt.Errorf("nat: %q has an invalid host", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("nat: %q has an invalid port", s)
	}
	if _, err := url.Parse("stun://" + net.JoinHostPort(host, port)); err != nil {
		return "", fmt.Errorf("nat: %q: %w", s, err)
	}
	return net.JoinHostPort(host, port), nil
}

// Discover classifies this host's NAT with the mapping test of RFC 5780
// §4.3: from one UDP socket it sends a binding request to a STUN server and
// another to the server's OTHER-ADDRESS. Different mapped addresses mean an
// address-dependent mapping, which WebRTC cannot traverse towards another
// restricted peer ([Restricted]); equal ones mean [Unrestricted].
//
// stunURLs are tried in order ("stun:host[:port]"); servers that fail, time
// out or lack OTHER-ADDRESS are skipped. If none works the result is
// [Unknown] with an error wrapping [ErrNoUsableServer]. Only IPv4 is probed,
// as deployed peers do. n is the network stack to probe through (nil: the
// operating system's; tests pass a pion virtual network). logger may be nil.
func Discover(ctx context.Context, n transport.Net, stunURLs []string, logger *slog.Logger) (Type, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if n == nil {
		std, err := stdnet.NewNet()
		if err != nil {
			return Unknown, fmt.Errorf("nat: discover: %w", err)
		}
		n = std
	}
	var errs []error
	for _, u := range stunURLs {
		if err := ctx.Err(); err != nil {
			return Unknown, fmt.Errorf("nat: discover: %w", err)
		}
		t, err := discoverOne(ctx, n, u)
		if err != nil {
			logger.Debug("NAT discovery server skipped", "server", u, "err", err)
			errs = append(errs, err)
			continue
		}
		return t, nil
	}
	return Unknown, fmt.Errorf("%w: %w", ErrNoUsableServer, errors.Join(errs...))
}

func discoverOne(ctx context.Context, n transport.Net, stunURL string) (Type, error) {
	hostport, err := ParseSTUNURL(stunURL)
	if err != nil {
		return Unknown, err
	}
	server, err := resolveUDP(ctx, n, hostport)
	if err != nil {
		return Unknown, fmt.Errorf("nat: resolve %s: %w", stunURL, err)
	}

	conn, err := n.ListenUDP("udp4", nil)
	if err != nil {
		return Unknown, fmt.Errorf("nat: listen: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	first, err := bindingRequest(ctx, conn, server)
	if err != nil {
		return Unknown, fmt.Errorf("nat: %s: %w", stunURL, err)
	}
	var other stun.OtherAddress
	if err := other.GetFrom(first); err != nil {
		return Unknown, fmt.Errorf("%w (%s)", ErrNoOtherAddress, stunURL)
	}
	var mapped1 stun.XORMappedAddress
	if err := mapped1.GetFrom(first); err != nil {
		return Unknown, fmt.Errorf("nat: %s: XOR-MAPPED-ADDRESS: %w", stunURL, err)
	}
	second, err := bindingRequest(ctx, conn, &net.UDPAddr{IP: other.IP, Port: other.Port})
	if err != nil {
		return Unknown, fmt.Errorf("nat: %s other address %s: %w", stunURL, other, err)
	}
	var mapped2 stun.XORMappedAddress
	if err := mapped2.GetFrom(second); err != nil {
		return Unknown, fmt.Errorf("nat: %s other address: XOR-MAPPED-ADDRESS: %w", stunURL, err)
	}
	if mapped1.IP.Equal(mapped2.IP) && mapped1.Port == mapped2.Port {
		return Unrestricted, nil
	}
	return Restricted, nil
}

// bindingRequest sends a binding request to addr and waits for the matching
// success response, retransmitting with RFC 5389's doubling timer (500 ms
// start) until [RoundTripTimeout].
// resolveUDP looks hostport up with n, giving up when ctx ends. A
// transport.Net's lookup takes no context, and where a censor drops DNS it
// lasts the resolver's timeouts (seconds per name server): a client's
// shutdown, which waits for discovery, would wait them out. The lookup
// itself runs on until the resolver gives up; its result is dropped.
func resolveUDP(ctx context.Context, n transport.Net, hostport string) (*net.UDPAddr, error) {
	type result struct {
		addr *net.UDPAddr
		err  error
	}
	done := make(chan result, 1)
	go func() {
		a, err := n.ResolveUDPAddr("udp4", hostport)
		done <- result{a, err}
	}()
	select {
	case r := <-done:
		return r.addr, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func bindingRequest(ctx context.Context, conn transport.UDPConn, addr *net.UDPAddr) (*stun.Message, error) {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	deadline := time.Now().Add(RoundTripTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	buf := make([]byte, 1500)
	rto := 500 * time.Millisecond
	for {
		if _, err := conn.WriteToUDP(req.Raw, addr); err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		wait := time.Now().Add(rto)
		if wait.After(deadline) {
			wait = deadline
		}
		rto *= 2
		for {
			// The context is checked after the deadline is set: a
			// cancellation before the check is seen here, and one after
			// it runs discoverOne's AfterFunc after this call, so its
			// expired deadline is not overwritten by ours.
			conn.SetReadDeadline(wait)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return nil, fmt.Errorf("receive: %w", err)
			}
			resp := new(stun.Message)
			resp.Raw = append([]byte(nil), buf[:n]...)
			if err := resp.Decode(); err != nil {
				continue // not STUN: ignore
			}
			if resp.TransactionID != req.TransactionID {
				continue // a late answer to an earlier probe
			}
			if resp.Type != stun.BindingSuccess {
				return nil, fmt.Errorf("unexpected response type %s", resp.Type)
			}
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("no response within %v", RoundTripTimeout)
		}
	}
}
