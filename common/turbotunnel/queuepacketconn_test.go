package turbotunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/xtaci/kcp-go/v5"
)

func TestQueuePacketConnIncoming(t *testing.T) {
	c := NewQueuePacketConn(ClientID{}, time.Minute)
	defer c.Close()
	a, b := ClientID{1}, ClientID{2}
	if !c.QueueIncoming([]byte("hello"), a) || !c.QueueIncoming([]byte("world!"), b) {
		t.Fatal("QueueIncoming dropped")
	}
	buf := make([]byte, 100)
	for _, want := range []struct {
		p    string
		addr net.Addr
	}{{"hello", a}, {"world!", b}} {
		n, addr, err := c.ReadFrom(buf)
		if err != nil || string(buf[:n]) != want.p || addr != want.addr {
			t.Fatalf("ReadFrom = %q, %v, %v; want %q from %v", buf[:n], addr, err, want.p, want.addr)
		}
	}
	if c.QueueIncoming(make([]byte, MaxPacketSize+1), a) {
		t.Error("oversize packet accepted")
	}
}

func TestQueuePacketConnIncomingBounded(t *testing.T) {
	c := NewQueuePacketConn(ClientID{}, time.Minute)
	defer c.Close()
	accepted := 0
	for range 3 * QueueSize {
		if c.QueueIncoming([]byte("x"), ClientID{1}) {
			accepted++
		}
	}
	if accepted != QueueSize {
		t.Fatalf("accepted %d packets, want %d", accepted, QueueSize)
	}
}

func TestQueuePacketConnOutgoing(t *testing.T) {
	c := NewQueuePacketConn(ClientID{}, time.Minute)
	defer c.Close()
	a := ClientID{1}
	// Packets written before a transport attaches wait in the queue.
	p := []byte("downstream")
	if n, err := c.WriteTo(p, a); err != nil || n != len(p) {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	p[0] = 'X' // WriteTo must have copied
	q, release := c.Attach(a)
	defer release()
	select {
	case got := <-q:
		if string(got) != "downstream" {
			t.Fatalf("got %q", got)
		}
		c.Release(got)
	case <-time.After(time.Second):
		t.Fatal("no packet on the outgoing queue")
	}
	// Full queues drop instead of blocking or growing.
	for range 2 * OutgoingQueueSize {
		if _, err := c.WriteTo([]byte("y"), a); err != nil {
			t.Fatal(err)
		}
	}
	if len(q) != OutgoingQueueSize {
		t.Fatalf("queue holds %d packets, want %d", len(q), OutgoingQueueSize)
	}
	if d := c.DroppedOutgoing(); d != OutgoingQueueSize {
		t.Fatalf("DroppedOutgoing = %d, want %d", d, OutgoingQueueSize)
	}
	if _, err := c.WriteTo(make([]byte, MaxPacketSize+1), a); err == nil {
		t.Error("oversize WriteTo succeeded")
	}
}

func TestQueuePacketConnExpiry(t *testing.T) {
	c := NewQueuePacketConn(ClientID{}, 50*time.Millisecond)
	defer c.Close()
	attached, idle := ClientID{1}, ClientID{2}
	_, release := c.Attach(attached)
	c.WriteTo([]byte("p"), idle)
	if c.Clients() != 2 {
		t.Fatalf("Clients = %d, want 2", c.Clients())
	}
	waitFor(t, func() bool { return c.Clients() == 1 }, "idle queue to expire")
	// The attached one survives until released, then expires too.
	time.Sleep(150 * time.Millisecond)
	if c.Clients() != 1 {
		t.Fatalf("attached queue expired")
	}
	release()
	release() // idempotent
	waitFor(t, func() bool { return c.Clients() == 0 }, "released queue to expire")
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	waitForWithin(t, 5*time.Second, cond, what)
}

// waitForWithin is waitFor with a deadline of its own.
func waitForWithin(t *testing.T, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestQueuePacketConnClose(t *testing.T) {
	c := NewQueuePacketConn(ClientID{}, time.Minute)
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	c.Close() // idempotent
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked ReadFrom = %v", err)
	}
	if _, err := c.WriteTo([]byte("x"), ClientID{}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteTo after Close = %v", err)
	}
	if c.QueueIncoming([]byte("x"), ClientID{}) {
		t.Fatal("QueueIncoming after Close accepted")
	}
}

func TestQueuePacketConnDeadline(t *testing.T) {
	c := NewQueuePacketConn(ClientID{}, time.Minute)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	_, _, err := c.ReadFrom(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) < 25*time.Millisecond {
		t.Fatalf("ReadFrom = %v after %v", err, time.Since(start))
	}
	// Clearing the deadline lets a read block until data comes.
	c.SetReadDeadline(time.Time{})
	go c.QueueIncoming([]byte("late"), ClientID{})
	buf := make([]byte, 10)
	n, _, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "late" {
		t.Fatalf("ReadFrom = %q, %v", buf[:n], err)
	}
}

// TestQueuePacketConnConcurrent hammers every method at once under -race.
func TestQueuePacketConnConcurrent(t *testing.T) {
	c := NewQueuePacketConn(ClientID{}, 20*time.Millisecond)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 {
		id := ClientID{byte(i)}
		wg.Add(3)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				c.QueueIncoming(bytes.Repeat([]byte{byte(j)}, j%MaxPacketSize), id)
				c.WriteTo([]byte{byte(j)}, id)
			}
		}()
		go func() {
			defer wg.Done()
			for {
				q, release := c.Attach(id)
				select {
				case <-stop:
					release()
					return
				case p := <-q:
					c.Release(p)
				}
				release()
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, MaxPacketSize)
			for {
				if _, _, err := c.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	c.Close()
	wg.Wait()
}

func BenchmarkQueuePacketConn(b *testing.B) {
	c := NewQueuePacketConn(ClientID{}, time.Minute)
	defer c.Close()
	id := ClientID{1}
	q, release := c.Attach(id)
	defer release()
	p := make([]byte, MTU)
	buf := make([]byte, MaxPacketSize)
	b.SetBytes(2 * MTU)
	b.ReportAllocs()
	for b.Loop() {
		c.QueueIncoming(p, id)
		c.ReadFrom(buf)
		c.WriteTo(p, id)
		c.Release(<-q)
	}
}

// TestQueueIncomingWait: a full receive queue makes the caller wait for
// room instead of dropping, until done is closed.
func TestQueueIncomingWait(t *testing.T) {
	c := NewQueuePacketConn(ClientID{}, time.Minute)
	defer c.Close()
	for range QueueSize {
		if !c.QueueIncoming([]byte("x"), ClientID{1}) {
			t.Fatal("queue full too early")
		}
	}
	queued := make(chan bool, 1)
	go func() { queued <- c.QueueIncomingWait([]byte("waited"), ClientID{2}, nil) }()
	select {
	case <-queued:
		t.Fatal("QueueIncomingWait returned while the queue was full")
	case <-time.After(50 * time.Millisecond):
	}
	buf := make([]byte, 10)
	c.ReadFrom(buf) // makes room
	if !<-queued {
		t.Fatal("QueueIncomingWait dropped after room was made")
	}
	// With the queue full again, closing done gives up.
	done := make(chan struct{})
	go func() { time.Sleep(30 * time.Millisecond); close(done) }()
	if c.QueueIncomingWait([]byte("x"), ClientID{3}, done) {
		t.Fatal("QueueIncomingWait queued into a full queue")
	}
	// Everything queued comes out in order, the waited packet last.
	var last string
	var n int
	for range QueueSize {
		m, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		last, n = string(buf[:m]), n+1
	}
	if last != "waited" || n != QueueSize {
		t.Fatalf("last packet %q after %d", last, n)
	}
}

// TestQueuePacketConnDetachedCopies checks that a queue no transport
// drains takes each KCP data segment once: retransmissions to a client that
// is away are dropped while the first copy waits, and everything else is
// queued as usual.
func TestQueuePacketConnDetachedCopies(t *testing.T) {
	c := NewQueuePacketConn(ClientID{}, time.Minute)
	defer c.Close()
	a := ClientID{1}
	push := func(sn uint32) []byte { return kcpPacket(kcp.IKCP_CMD_PUSH, sn, 0, 32, "data") }
	// A retransmission carries the same segment under a newer header.
	resend := func(sn uint32) []byte { return kcpPacket(kcp.IKCP_CMD_PUSH, sn, 3, 16, "data") }
	otherConv := push(1)
	binary.LittleEndian.PutUint32(otherConv[0:], 8)
	ack := kcpPacket(kcp.IKCP_CMD_ACK, 1, 0, 32, "")

	q, release := c.Attach(a)
	release() // a queue that was drained once, now detached
	for _, step := range []struct {
		name   string
		p      []byte
		queued bool
	}{
		{"first copy", push(1), true},
		{"retransmission", resend(1), false},
		{"with a new segment", join(resend(1), push(2)), true},
		{"all segments queued", join(resend(2), resend(1)), false},
		{"with an acknowledgment", join(ack, resend(1)), true},
		{"acknowledgment alone", ack, true},
		{"acknowledgment again", ack, true},
		{"another conversation", otherConv, true},
		{"not KCP", []byte("xyz"), true},
		{"not KCP again", []byte("xyz"), true},
		{"empty", nil, true},
		{"empty again", nil, true},
	} {
		before := len(q)
		if _, err := c.WriteTo(step.p, a); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if queued := len(q) > before; queued != step.queued {
			t.Errorf("%s: queued %v, want %v", step.name, queued, step.queued)
		}
	}
	if d := c.DroppedOutgoing(); d != 0 {
		t.Errorf("DroppedOutgoing = %d, want 0: copies are not counted as drops", d)
	}

	// An attached transport drains the queue, so every copy goes in.
	q, release = c.Attach(a)
	for len(q) > 0 {
		c.Release(<-q)
	}
	c.WriteTo(resend(1), a)
	c.WriteTo(resend(1), a)
	if len(q) != 2 {
		t.Errorf("attached: queue holds %d packets, want 2", len(q))
	}
	for len(q) > 0 {
		c.Release(<-q)
	}
	// Detached again: what was sent before does not count.
	release()
	c.WriteTo(resend(1), a)
	c.WriteTo(resend(1), a)
	if len(q) != 1 {
		t.Errorf("detached again: queue holds %d packets, want 1", len(q))
	}

	// A segment dropped on a full queue is not taken for queued.
	b := ClientID{2}
	for sn := range uint32(OutgoingQueueSize) {
		c.WriteTo(push(sn), b)
	}
	c.WriteTo(push(OutgoingQueueSize), b)
	c.WriteTo(push(OutgoingQueueSize), b)
	if d := c.DroppedOutgoing(); d != 2 {
		t.Errorf("DroppedOutgoing = %d, want 2", d)
	}
	qb, releaseB := c.Attach(b)
	defer releaseB()
	if len(qb) != OutgoingQueueSize {
		t.Errorf("full queue holds %d packets, want %d", len(qb), OutgoingQueueSize)
	}
}
