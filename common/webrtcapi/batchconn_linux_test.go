package webrtcapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// listenBatch returns a batchConn on a loopback address of network, and a
// plain socket to send to it from.
func listenBatch(t *testing.T, network, ip string) (*batchConn, *net.UDPConn) {
	t.Helper()
	n, err := Net(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	t.Cleanup(func() { c.Close() })
	bc, ok := c.(*batchConn)
	if !ok {
		t.Fatalf("ListenUDP returned %T, want *batchConn", c)
	}
	s, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return bc, s
}

// testDatagram is datagram i of a test burst: lengths from 0 to 1400, recognisable bytes.
func testDatagram(i int) []byte {
	b := make([]byte, (i*97)%1401)
	for j := range b {
		b[j] = byte(i + j)
	}
	return b
}

// waitQueued gives the kernel a moment to queue what was sent, so that the
// next read finds a whole burst.
func waitQueued() { time.Sleep(50 * time.Millisecond) }

// TestBatchConnBurst reads a burst through every read method in turn:
// each must return the datagrams in order, with their source, whichever
// method took them off the socket.
func TestBatchConnBurst(t *testing.T) {
	for _, tc := range []struct{ network, ip string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}} {
		t.Run(tc.network, func(t *testing.T) {
			c, s := listenBatch(t, tc.network, tc.ip)
			const total = 3*batchSize + 5
			for i := range total {
				if _, err := s.WriteTo(testDatagram(i), c.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			waitQueued()
			from := s.LocalAddr().(*net.UDPAddr).AddrPort()
			buf := make([]byte, 2048)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i := range total {
				var n int
				var addr netip.AddrPort
				var err error
				switch i % 5 {
				case 0:
					n, addr, err = c.ReadFromAddrPort(buf)
				case 1:
					var a net.Addr
					n, a, err = c.ReadFrom(buf)
					if err == nil {
						addr = a.(*net.UDPAddr).AddrPort()
					}
				case 2:
					var a *net.UDPAddr
					n, a, err = c.ReadFromUDP(buf)
					if err == nil {
						addr = a.AddrPort()
					}
				case 3:
					n, _, _, addr, err = c.ReadMsgUDPAddrPort(buf, nil)
				case 4:
					n, err = c.Read(buf)
					addr = from
				}
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if i == 0 && c.count < 2 {
					t.Errorf("the first read took %d datagram(s) of a queued burst, want a batch", c.count)
				}
				if !bytes.Equal(buf[:n], testDatagram(i)) {
					t.Fatalf("datagram %d: got %d bytes, want %d (reordered or corrupted)", i, n, len(testDatagram(i)))
				}
				if addr.Port() != from.Port() || addr.Addr().Unmap() != from.Addr().Unmap() {
					t.Fatalf("datagram %d from %v, want %v", i, addr, from)
				}
			}
		})
	}
}

// TestBatchConnLongDatagrams: a datagram longer than the reader's buffer is
// cut, as recvfrom cuts it; one longer than a batch slot is dropped and
// the rest of the batch still arrives.
func TestBatchConnLongDatagrams(t *testing.T) {
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	long := bytes.Repeat([]byte{7}, slotSize+1)
	for _, p := range [][]byte{long, []byte("a"), long, []byte("b")} {
		if _, err := s.WriteTo(p, c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	small := make([]byte, 100)
	n, _, err := c.ReadFromAddrPort(small)
	if err != nil || n != len(small) || small[0] != 7 {
		t.Fatalf("first read: %d bytes, %v; want the long datagram cut to %d", n, err, len(small))
	}
	buf := make([]byte, 2*slotSize)
	for _, want := range []string{"a", "b"} {
		n, _, err := c.ReadFromAddrPort(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
		}
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _, err := c.ReadFromAddrPort(buf); err == nil {
		t.Fatalf("read %d more bytes, want nothing (the long datagram in a slot is dropped)", n)
	}
}

func TestBatchConnDeadlineAndClose(t *testing.T) {
	c, _ := listenBatch(t, "udp4", "127.0.0.1")
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _, err := c.ReadFromAddrPort(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Errorf("error %#v, want a *net.OpError for read as package net returns", err)
	}

	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFromAddrPort(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked read")
	}
}

// TestBatchConnWrite checks the netip write path pion uses.
func TestBatchConnWrite(t *testing.T) {
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	to := s.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := c.WriteToAddrPort([]byte("hello"), to); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, from, err := s.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "hello" || from.Port() != c.LocalAddr().(*net.UDPAddr).AddrPort().Port() {
		t.Fatalf("got %q from %v, %v", buf[:n], from, err)
	}
}

// receive reads total datagrams from s in a goroutine, checking each with
// check, and reports the first problem (or nil) on the channel.
func receive(s *net.UDPConn, total int, check func(i int, p []byte) error) <-chan error {
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 2*sendBufSize)
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		for i := range total {
			n, _, err := s.ReadFromUDPAddrPort(buf)
			if err != nil {
				got <- fmt.Errorf("after %d datagrams: %w", i, err)
				return
			}
			if err := check(i, buf[:n]); err != nil {
				got <- fmt.Errorf("datagram %d: %w", i, err)
				return
			}
		}
		got <- nil
	}()
	return got
}

// sent is datagram i of TestBatchConnSendsInOrder: mostly testDatagram,
// now and then one longer than a pooled send buffer.
func sent(i int) []byte {
	if i%50 == 7 {
		return bytes.Repeat([]byte{byte(i)}, sendBufSize+100)
	}
	return testDatagram(i)
}

// TestBatchConnSendsInOrder writes bursts faster than one datagram per
// system call would go; every datagram must arrive, in order, intact.
func TestBatchConnSendsInOrder(t *testing.T) {
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	to := s.LocalAddr().(*net.UDPAddr).AddrPort()
	const total = 5 * maxQueued
	got := receive(s, total, func(i int, p []byte) error {
		if want := sent(i); !bytes.Equal(p, want) {
			return fmt.Errorf("%d bytes, want %d (lost, reordered or corrupted)", len(p), len(want))
		}
		return nil
	})
	for i := range total {
		p := sent(i)
		if n, err := c.WriteToAddrPort(p, to); err != nil || n != len(p) {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		if i%maxQueued == maxQueued-1 {
			// Let the receiver keep up: its socket buffer is finite.
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// TestBatchConnWaitsForTheRestOfABurst: a sender woken by the first
// datagram of a burst lets the goroutines already runnable write the rest
// before it sends. pion's DTLS 1.3 path writes a burst across such
// hand-offs; sent at once, the first datagram went out alone.
func TestBatchConnWaitsForTheRestOfABurst(t *testing.T) {
	// One P, as on a busy proxy: the sender then runs only when the
	// writers let it, which is what the order of hand-offs decides.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	to := s.LocalAddr().(*net.UDPAddr).AddrPort()
	const bursts, size = 20, 10
	var arrived atomic.Int64
	got := receive(s, bursts*size, func(i int, p []byte) error {
		if want := testDatagram(i); !bytes.Equal(p, want) {
			return fmt.Errorf("%d bytes, want %d (lost, reordered or corrupted)", len(p), len(want))
		}
		arrived.Add(1)
		return nil
	})
	write := func(i int) {
		if _, err := c.WriteToAddrPort(testDatagram(i), to); err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	for b := range bursts {
		rest := make(chan struct{})
		// The rest of the burst comes from a goroutine that is runnable
		// when the first datagram wakes the sender.
		go func() {
			defer close(rest)
			for i := 1; i < size; i++ {
				write(b*size + i)
			}
		}()
		write(b * size)
		<-rest
		// One burst at a time: the receiver's socket buffer is finite.
		for deadline := time.Now().Add(5 * time.Second); arrived.Load() < int64((b+1)*size) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	c.Close() // stops the sender, so its counters can be read
	// Now and then another goroutine (the receiver, the collector) runs
	// between the first datagram and the rest; without the wait every
	// burst took two batches.
	if c.out.batches > bursts+bursts/4 {
		t.Errorf("%d bursts of %d datagrams left in %d batches, want about one each", bursts, size, c.out.batches)
	}
	t.Logf("%d bursts in %d batches", bursts, c.out.batches)
}

// TestBatchConnSendFamilies: an IPv4 socket takes IPv4-mapped
// destinations, a dual-stack socket IPv4 ones, and an IPv4 socket refuses
// an IPv6 destination at once.
func TestBatchConnSendFamilies(t *testing.T) {
	n, err := Net(nil)
	if err != nil {
		t.Fatal(err)
	}
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	to := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	mapped := netip.AddrPortFrom(netip.AddrFrom16(to.Addr().As16()), to.Port())

	v4, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer v4.Close()
	w := v4.(*batchConn)
	if _, err := w.WriteToAddrPort([]byte("mapped"), mapped); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteToAddrPort([]byte("x"), netip.MustParseAddrPort("[::1]:9")); err == nil {
		t.Error("an IPv4 socket accepted an IPv6 destination")
	}
	if _, err := w.WriteToAddrPort([]byte("x"), netip.AddrPort{}); err == nil {
		t.Error("a write to the zero address was accepted")
	}
	want := []string{"mapped"}

	if dual, err := n.ListenUDP("udp", &net.UDPAddr{}); err == nil {
		defer dual.Close()
		if _, err := dual.(*batchConn).WriteToAddrPort([]byte("dual"), to); err != nil {
			t.Fatal(err)
		}
		want = append(want, "dual")
	}
	// Two sockets, two senders: the order of arrival is not defined.
	recv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	var got []string
	for range want {
		n, _, err := recv.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, string(buf[:n]))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("received %q, want %q", got, want)
	}
}

// TestBatchConnSendError: a datagram the kernel refuses is reported by the
// next write, once.
func TestBatchConnSendError(t *testing.T) {
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	// Linux refuses destination port 0 (EINVAL).
	if _, err := c.WriteToAddrPort([]byte("x"), netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		t.Fatalf("first write: %v, want it queued", err)
	}
	to := s.LocalAddr().(*net.UDPAddr).AddrPort()
	var reported error
	for deadline := time.Now().Add(5 * time.Second); reported == nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		_, reported = c.WriteToAddrPort([]byte("y"), to)
	}
	var oe *net.OpError
	if !errors.As(reported, &oe) || oe.Op != "write" {
		t.Fatalf("the refused datagram was reported as %v, want a write *net.OpError", reported)
	}
	if _, err := c.WriteToAddrPort([]byte("z"), to); err != nil {
		t.Errorf("the error was reported twice: %v", err)
	}
}

// TestBatchConnCloseWhileSending: Close with datagrams queued returns, and
// later writes fail with net.ErrClosed.
func TestBatchConnCloseWhileSending(t *testing.T) {
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	to := s.LocalAddr().(*net.UDPAddr).AddrPort()
	for range maxQueued {
		c.WriteToAddrPort(make([]byte, 1200), to)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung with datagrams queued")
	}
	if _, err := c.WriteToAddrPort([]byte("x"), to); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v, want net.ErrClosed", err)
	}
}

// TestBatchConnCloseSendsQueued: what was written before Close is sent.
func TestBatchConnCloseSendsQueued(t *testing.T) {
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	to := s.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := range 10 {
		if _, err := c.WriteToAddrPort(testDatagram(i), to); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for i := range 10 {
		n, _, err := s.ReadFromUDPAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:n], testDatagram(i)) {
			t.Fatalf("datagram %d: %d bytes, %v", i, n, err)
		}
	}
}

// TestBatchConnReadAllocs: reading, batched or not, allocates nothing.
func TestBatchConnReadAllocs(t *testing.T) {
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	const runs = 50
	for i := range runs + 1 { // AllocsPerRun reads once more to warm up
		if _, err := s.WriteTo(testDatagram(i), c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued()
	buf := make([]byte, 2048)
	allocs := testing.AllocsPerRun(runs, func() {
		if _, _, err := c.ReadFromAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per read, want 0", allocs)
	}
}

// TestBatchConnSegments: runs of equal datagrams to one destination go out
// as fewer messages (UDP_SEGMENT) and arrive as the datagrams they were.
func TestBatchConnSegments(t *testing.T) {
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	to := s.LocalAddr().(*net.UDPAddr).AddrPort()
	// Runs of 1,200-byte datagrams, each ended by a shorter one, so that
	// every kind of boundary occurs.
	size := func(i int) int {
		if i%20 == 19 {
			return 300 + i
		}
		return 1200
	}
	payload := func(i int) []byte {
		b := make([]byte, size(i))
		binary.BigEndian.PutUint32(b, uint32(i))
		return b
	}
	const total = 400
	got := receive(s, total, func(i int, p []byte) error {
		if len(p) != size(i) || binary.BigEndian.Uint32(p) != uint32(i) {
			return fmt.Errorf("%d bytes numbered %d, want %d bytes", len(p), binary.BigEndian.Uint32(p), size(i))
		}
		return nil
	})
	for i := range total {
		if _, err := c.WriteToAddrPort(payload(i), to); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if i%maxQueued == maxQueued-1 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	c.Close() // stops the sender, so its counters can be read
	if !c.out.gso {
		t.Skip("this kernel refused UDP_SEGMENT; the sender fell back to single datagrams")
	}
	if c.out.messages >= total {
		t.Errorf("%d messages for %d datagrams, want runs sent as one", c.out.messages, total)
	}
	t.Logf("%d datagrams in %d messages", total, c.out.messages)
}

// TestBatchConnSegmentsRefused: where the route's MTU is smaller than a
// run's datagrams, the kernel refuses to segment; the sender must fall
// back to single datagrams (which IP fragments) and lose nothing.
func TestBatchConnSegmentsRefused(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "mtu", "1280").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo mtu 1280: %v\n%s", err, out)
	}
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	to := s.LocalAddr().(*net.UDPAddr).AddrPort()
	const total, size = 20, 1300
	for i := range total {
		p := bytes.Repeat([]byte{byte(i)}, size)
		if _, err := c.WriteToAddrPort(p, to); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for i := range total {
		n, _, err := s.ReadFromUDPAddrPort(buf)
		if err != nil || n != size || buf[0] != byte(i) {
			t.Fatalf("datagram %d: %d bytes (%d), %v", i, n, buf[0], err)
		}
	}
	c.Close()
	if c.out.gso {
		t.Error("the sender still uses UDP_SEGMENT on a route that refuses it")
	}
}

// TestBatchConnReadMsgTruncated: a waiting datagram that ReadMsgUDPAddrPort
// cuts to fit its buffer is flagged MSG_TRUNC, as package net flags one
// read from the socket.
func TestBatchConnReadMsgTruncated(t *testing.T) {
	c, s := listenBatch(t, "udp4", "127.0.0.1")
	for _, p := range []string{"first", "second datagram"} {
		if _, err := s.WriteTo([]byte(p), c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	if n, _, err := c.ReadFromAddrPort(buf); err != nil || string(buf[:n]) != "first" {
		t.Fatalf("first read: %q, %v", buf[:n], err)
	}
	if c.next >= c.count {
		t.Skip("the second datagram was not taken in the first batch")
	}
	small := make([]byte, 6)
	n, _, flags, _, err := c.ReadMsgUDPAddrPort(small, nil)
	if err != nil || string(small[:n]) != "second" {
		t.Fatalf("second read: %q, %v", small[:n], err)
	}
	if flags&unix.MSG_TRUNC == 0 {
		t.Errorf("flags %#x for a datagram cut to fit the buffer, want MSG_TRUNC", flags)
	}
}
