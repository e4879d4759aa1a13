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
	seen := make(map[int]bool)
	for range 200 {
		port, err := TCP()
		if err != nil {
			t.Fatal(err)
		}
		if port < lowest || port >= hi {
			t.Fatalf("port %d outside [%d, %d)", port, lowest, hi)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("port %d cannot be bound: %v", port, err)
		}
		ln.Close()
	}
}

func TestPickSkipsPortsInUse(t *testing.T) {
	var tried []int
	port, err := pick(func(port int) (int, error) {
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
	_, err := pick(func(int) (int, error) { return 0, inUse })
	if !errors.Is(err, inUse) {
		t.Fatalf("err = %v, want one wrapping %v", err, inUse)
	}
}
