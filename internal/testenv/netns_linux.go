package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Netns is a second network namespace, with only loopback, made for one
// test. The test can open sockets inside it (Listen, ListenUDP, Dial) and
// start programs in it (Command), so a program under test can be cut off
// from everything except what the test deliberately bridges into its
// namespace. A holder process keeps the namespace alive until the test
// ends.
type Netns struct {
	holder *Process
	path   string // /proc/<holder>/ns/net
}

// NewNetns creates the namespace. Needs root, unshare(1), nsenter(1) and
// ip(8); without them the test is skipped (or fails under
// SNOWFLAKE_REQUIRE_TOOLS).
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	unshare := LookPath(t, "unshare")
	LookPath(t, "nsenter")
	ip := LookPath(t, "ip")
	if os.Geteuid() != 0 {
		Missing(t, "network namespaces need root")
	}
	// unshare and sh exec, so the holder's pid is the namespace's.
	p := Start(t, "netns-holder", nil, unshare, "--net", "--", "sh", "-c",
		ip+" link set lo up && echo netns-ready && exec sleep 86400")
	p.WaitFor(t, "netns-ready", 10*time.Second)
	return &Netns{holder: p, path: fmt.Sprintf("/proc/%d/ns/net", p.Cmd.Process.Pid)}
}

// Do runs fn on an OS thread that has entered the namespace; sockets fn
// creates belong to the namespace for their whole life.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is unlocked only once it is back in the original
		// namespace; if that fails, the goroutine exits locked and the
		// runtime discards the thread.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("testenv: netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(n.path)
		if err != nil {
			errc <- fmt.Errorf("testenv: netns: %w", err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("testenv: setns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("testenv: setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a stream listener inside the namespace.
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() (err error) { ln, err = net.Listen(network, addr); return err })
	return ln, err
}

// ListenUDP opens a UDP socket inside the namespace.
func (n *Netns) ListenUDP(network string, laddr *net.UDPAddr) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := n.Do(func() (err error) { c, err = net.ListenUDP(network, laddr); return err })
	return c, err
}

// Dial connects from inside the namespace (addr must be an IP literal:
// name resolution would run on other threads).
func (n *Netns) Dial(network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) { c, err = net.DialTimeout(network, addr, 10*time.Second); return err })
	return c, err
}

// Command returns the path and arguments that run path with args inside
// the namespace, for Start.
func (n *Netns) Command(path string, args ...string) (string, []string) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		nsenter = "nsenter"
	}
	return nsenter, append([]string{"--net=" + n.path, "--", path}, args...)
}
