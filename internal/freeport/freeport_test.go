package freeport

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestPortsAreDistinctAndBelowEphemeralRange(t *testing.T) {
	hi := ephemeralLow()
	if hi-lowest < 1000 {
		t.Skipf("ephemeral range starts at %d: ports come from the kernel", hi)
	}
	for _, tc := range []struct {
		network string
		pick    func() (int, error)
		bind    func(port int) error
	}{
		{"tcp", TCP, func(port int) error {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				ln.Close()
			}
			return err
		}},
		{"udp", UDP, func(port int) error {
			c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
			}
			return err
		}},
	} {
		seen := make(map[int]bool)
		for range 200 {
			port, err := tc.pick()
			if err != nil {
				t.Fatal(err)
			}
			if port < lowest || port >= hi {
				t.Fatalf("%s port %d outside [%d, %d)", tc.network, port, lowest, hi)
			}
			if seen[port] {
				t.Fatalf("%s port %d handed out twice", tc.network, port)
			}
			seen[port] = true
			if err := tc.bind(port); err != nil {
				t.Fatalf("%s port %d cannot be bound: %v", tc.network, port, err)
			}
		}
	}
}

func TestPickSkipsPortsInUse(t *testing.T) {
	var tried []int
	port, err := pick("tcp", func(port int) (int, error) {
		tried = append(tried, port)
		if len(tried) < 4 {
			return 0, errors.New("address already in use")
		}
		return port, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tried) != 4 || port != tried[3] {
		t.Fatalf("got port %d after trying %v; want the fourth", port, tried)
	}
}

func TestPickGivesUp(t *testing.T) {
	inUse := errors.New("address already in use")
	_, err := pick("tcp", func(int) (int, error) { return 0, inUse })
	if !errors.Is(err, inUse) {
		t.Fatalf("err = %v, want one wrapping %v", err, inUse)
	}
}
