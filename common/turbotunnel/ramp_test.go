package turbotunnel

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

type windowRecorder struct{ windows []int }

func (w *windowRecorder) SetWindowSize(snd, rcv int) {
	if rcv != 0 {
		panic("the ramp changed the receive window")
	}
	w.windows = append(w.windows, snd)
}

func TestSendRamp(t *testing.T) {
	var rec windowRecorder
	r := newSendRamp(&rec, time.Now())
	if !slices.Equal(rec.windows, []int{rampInitialWindow}) {
		t.Fatalf("a new ramp set windows %v, want [%d]", rec.windows, rampInitialWindow)
	}
	for _, step := range []struct {
		una  uint32 // a packet's cumulative acknowledgment
		want []int  // windows set on reading it
	}{
		{0, nil},
		{1, nil}, // half a segment
		{1, nil}, // a repeated acknowledgment
		{3, []int{rampInitialWindow + 1}},
		{2, nil}, // an earlier packet, reordered
		{65, []int{rampInitialWindow + 32}},
		{8126, []int{rampEndWindow - 1}},
		{8128, []int{WindowSize}}, // the ramp ends
		{9000, nil},
	} {
		rec.windows = nil
		r.acknowledged(step.una)
		if !slices.Equal(rec.windows, step.want) {
			t.Fatalf("acknowledged(%d) set windows %v, want %v", step.una, rec.windows, step.want)
		}
	}
}

// Sequence numbers wrap; the ramp counts across the wrap.
func TestSendRampSequenceWrap(t *testing.T) {
	var rec windowRecorder
	r := newSendRamp(&rec, time.Now())
	r.una = 1<<32 - 10
	r.acknowledged(5)
	if want := []int{rampInitialWindow, rampInitialWindow + 7}; !slices.Equal(rec.windows, want) {
		t.Fatalf("windows %v, want %v", rec.windows, want)
	}
}

func TestSendRampExpires(t *testing.T) {
	var rec windowRecorder
	start := time.Now()
	r := newSendRamp(&rec, start)
	r.expire(start.Add(rampMaxDuration - time.Millisecond))
	r.acknowledged(8)
	if want := []int{rampInitialWindow, rampInitialWindow + 4}; !slices.Equal(rec.windows, want) {
		t.Fatalf("windows %v before the ramp's time is up, want %v", rec.windows, want)
	}
	rec.windows = nil
	r.expire(start.Add(rampMaxDuration))
	r.expire(start.Add(2 * rampMaxDuration))
	r.acknowledged(16)
	if want := []int{WindowSize}; !slices.Equal(rec.windows, want) {
		t.Fatalf("windows %v once the ramp's time is up, want %v", rec.windows, want)
	}
}

// firstFlightCounter is a server's packet conn that counts the data
// segments the server sends before it reads its first acknowledgment.
type firstFlightCounter struct {
	net.PacketConn
	mu      sync.Mutex
	acked   bool
	segs    map[uint32]bool // sequence numbers sent before the first ack
	reached bool            // a data segment was sent after the first ack
}

func (c *firstFlightCounter) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		walkSegments(p[:n], func(seg kcpSegment) bool {
			if seg.cmd == kcp.IKCP_CMD_ACK {
				c.mu.Lock()
				c.acked = true
				c.mu.Unlock()
				return false
			}
			return true
		})
	}
	return n, addr, err
}

func (c *firstFlightCounter) WriteTo(p []byte, addr net.Addr) (int, error) {
	walkSegments(p, func(seg kcpSegment) bool {
		if seg.cmd == kcp.IKCP_CMD_PUSH {
			c.mu.Lock()
			if c.acked {
				c.reached = true
			} else {
				c.segs[seg.sn] = true
			}
			c.mu.Unlock()
		}
		return true
	})
	return c.PacketConn.WriteTo(p, addr)
}

// A new session's first flight is the ramp's initial window, not the
// stream's whole smux window (about 760 segments).
func TestNewSessionFirstFlight(t *testing.T) {
	const size = 1 << 20
	counter := &firstFlightCounter{segs: map[uint32]bool{}}
	srv := newWrappedStreamServer(t, serveZeros(size), func(pc net.PacketConn) net.PacketConn {
		counter.PacketConn = pc
		return counter
	})
	// The client's packets take 20 ms to leave, so that the server has
	// long written the whole stream into KCP when the first
	// acknowledgment arrives.
	_, _, _, sess := dialWrappedSession(t, srv, func(pc net.PacketConn) net.PacketConn {
		return &slowSender{PacketConn: pc, delay: 20 * time.Millisecond}
	})
	st := requestStream(t, sess)
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, st)
	if err != nil || n != size {
		t.Fatalf("read %d bytes (%v), want %d", n, err, size)
	}
	counter.mu.Lock()
	defer counter.mu.Unlock()
	if !counter.reached {
		t.Fatal("no data was sent after the first acknowledgment")
	}
	if got := len(counter.segs); got == 0 || got > rampInitialWindow {
		t.Errorf("server sent %d data segments before its first acknowledgment, want 1 to %d", got, rampInitialWindow)
	}
}

// slowSender delays every packet it sends.
type slowSender struct {
	net.PacketConn
	delay time.Duration
}

func (c *slowSender) WriteTo(p []byte, addr net.Addr) (int, error) {
	time.Sleep(c.delay)
	return c.PacketConn.WriteTo(p, addr)
}

// serveZeros returns a stream handler that reads one byte, then writes
// size zero bytes and closes the stream.
func serveZeros(size int) func(*smux.Stream) {
	return func(st *smux.Stream) {
		defer st.Close()
		if _, err := st.Read(make([]byte, 1)); err != nil {
			return
		}
		buf := make([]byte, 32<<10)
		for left := size; left > 0; left -= len(buf) {
			if _, err := st.Write(buf[:min(left, len(buf))]); err != nil {
				return
			}
		}
	}
}

// throttledConn delivers what it reads at rate bytes a second at most.
type throttledConn struct {
	net.Conn
	rate  float64
	start time.Time
	read  int
}

func (c *throttledConn) Read(p []byte) (int, error) {
	// Small reads keep the delivery smooth.
	n, err := c.Conn.Read(p[:min(len(p), 4096)])
	c.read += n
	due := c.start.Add(time.Duration(float64(c.read) / c.rate * float64(time.Second)))
	time.Sleep(time.Until(due))
	return n, err
}

// throttledDialer dials srv's transports, each delivering what srv sends at
// rate bytes a second.
func throttledDialer(srv *echoServer, rate float64) *testenv.CuttableDialer {
	return testenv.NewCuttableDialer(func(ctx context.Context) (net.Conn, error) {
		var nd net.Dialer
		c, err := nd.DialContext(ctx, "tcp", srv.ln.Addr().String())
		if err != nil {
			return nil, err
		}
		return &throttledConn{Conn: c, rate: rate, start: time.Now()}, nil
	})
}

// BenchmarkSlowLinkDownload downloads 4 MiB over a new session whose
// server-to-client direction carries 1 MB/s (a slow proxy), and reports
// the share of the KCP segments sent that were retransmissions (both
// ends; the client sends few) and the time it took; ideal is about 4.3 s
// with the encapsulation's overhead.
func BenchmarkSlowLinkDownload(b *testing.B) {
	const size, rate = 4 << 20, 1e6
	for b.Loop() {
		srv := newStreamServer(b, serveZeros(size))
		sess, err := DialSession(NewRedialPacketConn(NewClientID(), throttledDialer(srv, rate).Dial, nil))
		if err != nil {
			b.Fatal(err)
		}
		before, start := kcp.DefaultSnmp.Copy(), time.Now()
		st := requestStream(b, sess)
		n, err := io.Copy(io.Discard, st)
		took := time.Since(start)
		after := kcp.DefaultSnmp.Copy()
		sess.Close()
		if err != nil || n != size {
			b.Fatalf("read %d bytes (%v), want %d", n, err, size)
		}
		if out := after.OutSegs - before.OutSegs; out > 0 {
			b.ReportMetric(float64(after.RetransSegs-before.RetransSegs)/float64(out)*100, "%retransmitted")
		}
		b.ReportMetric(took.Seconds(), "s/download")
	}
}
