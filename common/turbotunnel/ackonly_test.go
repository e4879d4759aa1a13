package turbotunnel

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/xtaci/kcp-go/v5"
)

// kcpPacket builds a KCP packet of one segment.
func kcpPacket(cmd byte, sn, una uint32, wnd uint16, payload string) []byte {
	b := make([]byte, kcp.IKCP_OVERHEAD, kcp.IKCP_OVERHEAD+len(payload))
	binary.LittleEndian.PutUint32(b[0:], 7) // conv
	b[4] = cmd
	binary.LittleEndian.PutUint16(b[6:], wnd)
	binary.LittleEndian.PutUint32(b[12:], sn)
	binary.LittleEndian.PutUint32(b[16:], una)
	binary.LittleEndian.PutUint32(b[20:], uint32(len(payload)))
	return append(b, payload...)
}

// segment builds one KCP segment with the given command and payload (see
// kcpPacket for the other header fields).
func segment(cmd byte, payload string) []byte { return kcpPacket(cmd, 0, 0, 0, payload) }

func join(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestIsAckOnly(t *testing.T) {
	ack := segment(kcp.IKCP_CMD_ACK, "")
	lying := segment(kcp.IKCP_CMD_ACK, "")
	binary.LittleEndian.PutUint32(lying[20:], 0xffffffff)
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"one ack", ack, true},
		{"three acks", join(ack, ack, ack), true},
		{"push", segment(kcp.IKCP_CMD_PUSH, "hello"), false},
		{"ack then push", join(ack, segment(kcp.IKCP_CMD_PUSH, "x")), false},
		{"push then ack", join(segment(kcp.IKCP_CMD_PUSH, "x"), ack), false},
		{"window probe", segment(kcp.IKCP_CMD_WASK, ""), false},
		{"empty", nil, false},
		{"short header", ack[:kcp.IKCP_OVERHEAD-1], false},
		{"ack then a partial header", join(ack, ack[:10]), false},
		{"length past the end", lying, false},
		{"length one past the end", segment(kcp.IKCP_CMD_ACK, "ab")[:kcp.IKCP_OVERHEAD+1], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsAckOnly(tc.p); got != tc.want {
				t.Errorf("IsAckOnly = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestIsAckOnlyKCP checks the layout against packets the KCP library
// really produces.
func TestIsAckOnlyKCP(t *testing.T) {
	var data, acks [][]byte
	capture := func(into *[][]byte) func([]byte, int) {
		return func(buf []byte, n int) { *into = append(*into, append([]byte(nil), buf[:n]...)) }
	}
	sender := kcp.NewKCP(1, capture(&data))
	receiver := kcp.NewKCP(1, capture(&acks))
	sender.NoDelay(0, 10, 0, 1) // no congestion window, as configureKCP sets
	sender.Send([]byte("request"))
	sender.Update()
	if len(data) != 1 {
		t.Fatalf("sender produced %d packets, want 1", len(data))
	}
	// A regular packet (not FEC-recovered), with ackNoDelay so that the
	// receiver answers with an acknowledgment at once.
	if ret := receiver.Input(data[0], true, true); ret != 0 {
		t.Fatalf("Input = %d", ret)
	}
	if len(acks) != 1 {
		t.Fatalf("receiver produced %d packets, want 1", len(acks))
	}
	if IsAckOnly(data[0]) {
		t.Error("data packet reported ack-only")
	}
	if !IsAckOnly(acks[0]) {
		t.Errorf("acknowledgment % x not reported ack-only", acks[0])
	}
}

// more runs g.More in a goroutine and fails the test if it does not
// return within limit.
func more(t *testing.T, g *Gatherer, queue chan []byte, done chan struct{}, limit time.Duration) ([]byte, bool) {
	t.Helper()
	type result struct {
		p  []byte
		ok bool
	}
	ch := make(chan result, 1)
	go func() {
		p, ok := g.More(queue, done)
		ch <- result{p, ok}
	}()
	select {
	case r := <-ch:
		return r.p, r.ok
	case <-time.After(limit):
		t.Fatalf("More did not return within %v", limit)
		return nil, false
	}
}

func TestGathererTakesQueued(t *testing.T) {
	g := NewGatherer(time.Hour)
	defer g.Stop()
	queue := make(chan []byte, 4)
	data := segment(kcp.IKCP_CMD_PUSH, "x")
	queue <- data
	g.Begin(data)
	if p, ok := more(t, g, queue, nil, 5*time.Second); !ok || string(p) != string(data) {
		t.Fatalf("More = %x, %v; want the queued packet", p, ok)
	}
	// A batch with data in it is sent as soon as the queue is empty.
	if _, ok := more(t, g, queue, nil, 5*time.Second); ok {
		t.Fatal("More on an empty queue reported a packet")
	}
}

func TestGathererHoldsAcks(t *testing.T) {
	g := NewGatherer(time.Hour)
	defer g.Stop()
	queue := make(chan []byte)
	ack, reply := segment(kcp.IKCP_CMD_ACK, ""), segment(kcp.IKCP_CMD_PUSH, "reply")
	g.Begin(ack)
	go func() {
		time.Sleep(20 * time.Millisecond)
		queue <- reply
	}()
	if p, ok := more(t, g, queue, nil, 5*time.Second); !ok || string(p) != string(reply) {
		t.Fatalf("More = %x, %v; want the reply that came during the hold", p, ok)
	}
	// One wait per batch.
	if _, ok := more(t, g, queue, nil, 5*time.Second); ok {
		t.Fatal("More reported a packet after the batch already waited")
	}

	// The next batch may wait again, and a second acknowledgment keeps it
	// ack-only.
	g.Begin(ack)
	buffered := make(chan []byte, 2)
	buffered <- ack
	if _, ok := more(t, g, buffered, nil, 5*time.Second); !ok {
		t.Fatal("More missed a queued acknowledgment")
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		buffered <- reply
	}()
	if p, ok := more(t, g, buffered, nil, 5*time.Second); !ok || string(p) != string(reply) {
		t.Fatalf("More = %x, %v; want the reply after two acknowledgments", p, ok)
	}
}

func TestGathererHoldEnds(t *testing.T) {
	const wait = 30 * time.Millisecond
	g := NewGatherer(wait)
	defer g.Stop()
	queue := make(chan []byte)
	g.Begin(segment(kcp.IKCP_CMD_ACK, ""))
	start := time.Now()
	if _, ok := more(t, g, queue, nil, 5*time.Second); ok {
		t.Fatal("More reported a packet from an empty queue")
	}
	if d := time.Since(start); d < wait {
		t.Errorf("acknowledgments held %v, want at least %v", d, wait)
	}

	// done ends a hold at once.
	long := NewGatherer(time.Hour)
	defer long.Stop()
	done := make(chan struct{})
	long.Begin(segment(kcp.IKCP_CMD_ACK, ""))
	time.AfterFunc(10*time.Millisecond, func() { close(done) })
	if _, ok := more(t, long, queue, done, 5*time.Second); ok {
		t.Fatal("More reported a packet after done")
	}
}

func TestEndsWithFIN(t *testing.T) {
	fin := string([]byte{smuxVersion, smuxCmdFIN, 0, 0, 3, 0, 0, 0})
	psh := string([]byte{smuxVersion, 2, 5, 0, 3, 0, 0, 0}) + "hello"
	ack := segment(kcp.IKCP_CMD_ACK, "")
	lying := segment(kcp.IKCP_CMD_PUSH, fin)
	binary.LittleEndian.PutUint32(lying[20:], 0xffffffff)
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"fin", segment(kcp.IKCP_CMD_PUSH, fin), true},
		{"data then fin", segment(kcp.IKCP_CMD_PUSH, psh+fin), true},
		{"fin then an ack", join(segment(kcp.IKCP_CMD_PUSH, fin), ack), true},
		{"fin then data", join(segment(kcp.IKCP_CMD_PUSH, fin), segment(kcp.IKCP_CMD_PUSH, psh)), false},
		{"data", segment(kcp.IKCP_CMD_PUSH, psh), false},
		{"fin header with a length", segment(kcp.IKCP_CMD_PUSH, string([]byte{smuxVersion, smuxCmdFIN, 1, 0, 3, 0, 0, 0})), false},
		{"version 1", segment(kcp.IKCP_CMD_PUSH, string([]byte{1, smuxCmdFIN, 0, 0, 3, 0, 0, 0})), false},
		{"fin bytes in an ack", segment(kcp.IKCP_CMD_ACK, fin), false},
		{"short payload", segment(kcp.IKCP_CMD_PUSH, fin[1:]), false},
		{"acks", join(ack, ack), false},
		{"empty", nil, false},
		{"length past the end", lying, false},
		{"fin then a partial header", join(segment(kcp.IKCP_CMD_PUSH, fin), ack[:10]), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := endsWithFIN(tc.p); got != tc.want {
				t.Errorf("endsWithFIN = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzSegmentWalk runs the packet walkers over arbitrary bytes: none may
// panic, and a packet of acknowledgments alone carries no FIN. The bytes
// also go through an idle pacer both ways, as a client's packets and the
// server's.
func FuzzSegmentWalk(f *testing.F) {
	fin := string([]byte{smuxVersion, smuxCmdFIN, 0, 0, 3, 0, 0, 0})
	f.Add(segment(kcp.IKCP_CMD_PUSH, fin))
	f.Add(join(segment(kcp.IKCP_CMD_ACK, ""), segment(kcp.IKCP_CMD_ACK, "")))
	f.Add(join(segment(kcp.IKCP_CMD_PUSH, "data"+fin), segment(kcp.IKCP_CMD_ACK, "")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		if IsAckOnly(p) && endsWithFIN(p) {
			t.Fatalf("%x: ack-only and ending with a FIN", p)
		}
		pacer := newIdlePacer(&fakeTimer{})
		pacer.received(p)
		pacer.sent(p)
		pacer.sweep(time.Now())
	})
}
