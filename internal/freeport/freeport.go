// Package freeport picks loopback ports for programs that must be told a
// port number before they start (tor, upstream binaries) instead of
// listening on port 0 and reporting what they got.
//
// The obvious way, binding port 0 and closing the socket, draws the port
// from the kernel's ephemeral range. Until the program binds it, any
// outgoing connection of any process on the host may take that port as its
// source port; a private Tor network, whose authorities connect to each
// other while the bridge's ports are being chosen, lost that race. Ports
// below the ephemeral range are never given to outgoing connections, so
// only another listener can take one in that window.
package freeport

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
)

// lowest is the bottom of the range ports are drawn from: high enough to
// stay clear of the registered ports of common services.
const lowest = 20000

// defaultEphemeralLow is where Linux's ephemeral range starts by default,
// used when the system does not say.
const defaultEphemeralLow = 32768

// given records the ports handed out by this process, so that two callers
// that have not bound theirs yet never get the same one. It is
// process-wide because the ports are: any two pickers in one process could
// otherwise collide.
var given struct {
	sync.Mutex
	ports map[int]bool
}

// TCP returns a port on which 127.0.0.1 had no TCP listener a moment ago.
func TCP() (int, error) {
	return pick(func(port int) (int, error) {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return 0, err
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port, nil
	})
}

// pick draws ports at random from [lowest, start of the ephemeral range)
// until one that was not handed out before can be bound. bind binds the
// port it is given (0: one the kernel chooses) and returns its number.
func pick(bind func(port int) (int, error)) (int, error) {
	hi := ephemeralLow()
	// A system whose ephemeral range leaves little room below it gets the
	// kernel's choice, with the old race.
	fromKernel := hi-lowest < 1000
	given.Lock()
	defer given.Unlock()
	if given.ports == nil {
		given.ports = make(map[int]bool)
	}
	var lastErr error
	for range 200 {
		port := 0
		if !fromKernel {
			port = lowest + rand.IntN(hi-lowest)
			if given.ports[port] {
				continue
			}
		}
		port, err := bind(port)
		if err != nil {
			lastErr = err
			continue
		}
		if given.ports[port] {
			continue
		}
		given.ports[port] = true
		return port, nil
	}
	if lastErr == nil {
		lastErr = errors.New("every port drawn was handed out already")
	}
	return 0, fmt.Errorf("freeport: no free port below %d: %w", hi, lastErr)
}

// ephemeralLow returns the first port of the range the kernel assigns to
// outgoing connections and to binds of port 0 (a per-namespace setting).
func ephemeralLow() int {
	f, err := os.Open("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralLow
	}
	defer f.Close()
	var lo, hi int
	if _, err := fmt.Fscan(bufio.NewReader(f), &lo, &hi); err != nil || lo <= 0 {
		return defaultEphemeralLow
	}
	return lo
}
