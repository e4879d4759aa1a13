package dataconn

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v5"
	"github.com/xtaci/kcp-go/v5"

	"github.com/snowflake-go/snowflake/common/encapsulation"
	"github.com/snowflake-go/snowflake/common/turbotunnel"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// pair connects two in-process PeerConnections over loopback and returns
// both ends of one data channel, wrapped with cfg.
func pair(t *testing.T, cfg Config) (a, b *Conn, dcA *webrtc.DataChannel) {
	t.Helper()
	return pairMax(t, cfg, 0)
}

// pairMax is pair with the second peer announcing maxMessageB as the
// largest message it accepts (0: pion's default).
func pairMax(t *testing.T, cfg Config, maxMessageB uint32) (a, b *Conn, dcA *webrtc.DataChannel) {
	t.Helper()
	var se webrtc.SettingEngine
	se.DetachDataChannels()
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pcA, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	seB := se
	seB.SetSCTPMaxMessageSize(maxMessageB)
	pcB, err := webrtc.NewAPI(webrtc.WithSettingEngine(seB)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pcA.Close(); pcB.Close() })
	dcA, err = pcA.CreateDataChannel("test", nil)
	if err != nil {
		t.Fatal(err)
	}
	openA := make(chan struct{})
	dcA.OnOpen(func() { close(openA) })
	dcBch := make(chan *webrtc.DataChannel, 1)
	pcB.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() { dcBch <- dc })
	})
	testenv.ExchangeSDP(t, pcA, pcB)
	var dcB *webrtc.DataChannel
	select {
	case <-openA:
	case <-time.After(15 * time.Second):
		t.Fatal("data channel did not open")
	}
	select {
	case dcB = <-dcBch:
	case <-time.After(15 * time.Second):
		t.Fatal("remote data channel did not open")
	}
	a, err = New(dcA, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err = New(dcB, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b, dcA
}

func TestStreamBothWays(t *testing.T) {
	a, b, _ := pair(t, Config{})
	const size = 4 << 20
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	var wg sync.WaitGroup
	check := func(name string, r io.Reader) {
		defer wg.Done()
		h := sha256.New()
		// Small reads exercise the buffering of large messages.
		if _, err := io.CopyBuffer(h, io.LimitReader(r, size), make([]byte, 1000)); err != nil {
			t.Errorf("%s read: %v", name, err)
		}
		if !bytes.Equal(h.Sum(nil), want[:]) {
			t.Errorf("%s: SHA-256 mismatch", name)
		}
	}
	wg.Add(2)
	go check("b", b)
	go check("a", a)
	// Writes of assorted sizes, including some above the message limit.
	for _, w := range []*Conn{a, b} {
		for off := 0; off < size; {
			n := min(1+off%(3*maxMessage), size-off)
			if _, err := w.Write(data[off : off+n]); err != nil {
				t.Fatal(err)
			}
			off += n
		}
	}
	wg.Wait()
}

func TestFlowControl(t *testing.T) {
	a, b, dcA := pair(t, Config{})
	done := make(chan struct{})
	var peak uint64
	go func() {
		defer close(done)
		buf := make([]byte, 16<<10)
		for i := 0; i < 400; i++ { // ~6.5 MB
			if _, err := a.Write(buf); err != nil {
				t.Errorf("write: %v", err)
				return
			}
			peak = max(peak, dcA.BufferedAmount())
		}
	}()
	// A slow reader: the writer must wait, not queue everything.
	time.Sleep(500 * time.Millisecond)
	go io.Copy(io.Discard, b)
	<-done
	if limit := uint64(DefaultHighWater + maxMessage); peak > limit {
		t.Fatalf("buffered amount reached %d, above %d", peak, limit)
	}
}

func TestIdleTimeout(t *testing.T) {
	// The timeout is ten ping intervals, so that a loaded machine that
	// delays a ping (or its delivery) by a few hundred milliseconds does
	// not end a conn that is in use; the pings go on for twice the
	// timeout, so a conn that ignored them would be closed meanwhile.
	const timeout, interval = time.Second, 100 * time.Millisecond
	a, b, _ := pair(t, Config{IdleTimeout: timeout})
	// Traffic keeps it alive...
	go io.Copy(io.Discard, a)
	for start := time.Now(); time.Since(start) < 2*timeout; {
		b.Write([]byte("ping"))
		time.Sleep(interval)
	}
	select {
	case <-a.Done():
		t.Fatal("closed while data was flowing")
	default:
	}
	// ...silence ends it.
	select {
	case <-a.Done():
	case <-time.After(10 * timeout):
		t.Fatal("idle conn not closed")
	}
	if !errors.Is(a.Err(), ErrIdle) {
		t.Fatalf("Err = %v, want ErrIdle", a.Err())
	}
	if _, err := a.Write([]byte("x")); err == nil {
		t.Fatal("write after idle close succeeded")
	}
}

func TestCloseIdempotent(t *testing.T) {
	var closed int
	var mu sync.Mutex
	a, _, _ := pair(t, Config{OnClose: func() { mu.Lock(); closed++; mu.Unlock() }})
	for i := 0; i < 3; i++ {
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if closed != 1 {
		t.Fatalf("OnClose ran %d times", closed)
	}
	if _, err := a.Read(make([]byte, 10)); err == nil {
		t.Fatal("read after close succeeded")
	}
}

// TestWaitSent: WaitSent returns once the peer has everything written, and
// gives up when its context ends first or the conn closes.
func TestWaitSent(t *testing.T) {
	a, b, dcA := pair(t, Config{})
	// The peer does not read yet: once its receive window is full, what
	// is written stays buffered here (and Write blocks at the high mark).
	buf := make([]byte, 64<<10)
	wrote := make(chan error, 1)
	go func() {
		for range 64 {
			if _, err := a.Write(buf); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	deadline := time.Now().Add(5 * time.Second)
	for dcA.BufferedAmount() < DefaultHighWater/2 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes buffered with a peer that does not read", dcA.BufferedAmount())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := a.WaitSent(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSent with a stalled peer = %v, want the deadline", err)
	}
	go io.Copy(io.Discard, b)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.WaitSent(ctx); err != nil {
		t.Fatalf("WaitSent = %v", err)
	}
	if n := dcA.BufferedAmount(); n != 0 {
		t.Fatalf("WaitSent returned with %d bytes buffered", n)
	}
	a.Close()
	if err := a.WaitSent(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WaitSent on a closed conn = %v", err)
	}
}

// TestWriteDeadline: a Write that waits for a peer that does not read
// returns a timeout once the write deadline passes, as a net.Conn's must;
// a Write after the deadline fails at once.
func TestWriteDeadline(t *testing.T) {
	a, _, _ := pair(t, Config{}) // the peer never reads
	a.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for range 1000 { // far more than the peer's window and the high mark
			if _, err := a.Write(buf); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("write past the deadline: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("write deadline not honoured: Write still waiting")
	}
	if n, err := a.Write([]byte("x")); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write after the deadline: %d, %v; want a timeout", n, err)
	}
	// Lifting the deadline lets writes through again (the peer's window
	// is full, so only the first check matters here).
	a.SetWriteDeadline(time.Time{})
	select {
	case <-a.Done():
		t.Fatal("the deadline closed the conn")
	default:
	}
}

// TestWriteSmallerPeerMessages: a peer that accepts only smaller messages
// than maxMessage (one whose SDP has no max-message-size gets 65535) still
// receives a long Write whole, cut into messages it accepts.
func TestWriteSmallerPeerMessages(t *testing.T) {
	const peerMax = 16 << 10
	a, b, _ := pairMax(t, Config{}, peerMax)
	data := make([]byte, 3*maxMessage+123)
	rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		buf, _ := io.ReadAll(io.LimitReader(b, int64(len(data))))
		got <- buf
	}()
	if n, err := a.Write(data); n != len(data) || err != nil {
		t.Fatalf("write of %d bytes to a peer accepting %d-byte messages: %d, %v", len(data), peerMax, n, err)
	}
	select {
	case buf := <-got:
		if !bytes.Equal(buf, data) {
			t.Fatalf("read back %d bytes, not those written", len(buf))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("data not received")
	}
}

// TestJunkIsNotLife: a peer that sends only junk, bytes that carry no
// packet of the session, for longer than the idle timeout, does not keep
// the conn alive; one that sends KCP packets does. The conn is read as
// the client reads it, by a turbotunnel.RedialPacketConn, which tells the
// conn what counts as life.
func TestJunkIsNotLife(t *testing.T) {
	const timeout, interval = time.Second, 50 * time.Millisecond
	chunk := func(p []byte) []byte {
		b, _ := encapsulation.AppendData(nil, p)
		return b
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	// A KCP packet of one segment: an acknowledgment (cmd ACK, no
	// payload) is what a bridge sends every few milliseconds while data
	// flows.
	segment := func(cmd byte, payload []byte) []byte {
		b := make([]byte, kcp.IKCP_OVERHEAD, kcp.IKCP_OVERHEAD+len(payload))
		binary.LittleEndian.PutUint32(b[0:], 7) // conv
		b[4] = cmd
		binary.LittleEndian.PutUint32(b[20:], uint32(len(payload)))
		return append(b, payload...)
	}
	ack := segment(kcp.IKCP_CMD_ACK, nil)
	lying := segment(kcp.IKCP_CMD_PUSH, random(200))
	binary.LittleEndian.PutUint32(lying[20:], 201)
	for _, tc := range []struct {
		name  string
		send  []byte // written every interval
		alive bool
	}{
		{"padding", append(encapsulation.AppendPrefix(nil, 100, false), make([]byte, 100)...), false},
		{"empty data chunks", chunk(nil), false},
		{"runt data chunk", chunk(random(10)), false},
		{"data chunk too long for a packet", chunk(random(turbotunnel.MaxPacketSize + 1)), false},
		{"KCP header longer than its chunk", chunk(lying), false},
		{"unknown KCP command", chunk(segment(0, random(20))), false},
		{"KCP acknowledgments", chunk(ack), true},
		{"KCP data, padding between", append(chunk(segment(kcp.IKCP_CMD_PUSH, random(100))), 0x03, 1, 2, 3), true},
		{"KCP acknowledgments, non-minimal prefix", append([]byte{0xc0, 0x80, byte(len(ack))}, ack...), true},
		{"two segments in a packet", chunk(append(segment(kcp.IKCP_CMD_WINS, nil), segment(kcp.IKCP_CMD_PUSH, random(30))...)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b, _ := pair(t, Config{IdleTimeout: timeout, ExplicitLife: true})
			var dialled atomic.Bool
			pconn := turbotunnel.NewRedialPacketConn(turbotunnel.NewClientID(), func(ctx context.Context) (net.Conn, error) {
				if dialled.Swap(true) {
					<-ctx.Done() // one transport only
					return nil, ctx.Err()
				}
				return a, nil
			}, nil)
			defer pconn.Close()
			go func() { // what KCP would read
				buf := make([]byte, turbotunnel.MaxPacketSize)
				for {
					if _, _, err := pconn.ReadFrom(buf); err != nil {
						return
					}
				}
			}()
			go io.Copy(io.Discard, b) // the preamble
			for start := time.Now(); time.Since(start) < 3*timeout; time.Sleep(interval) {
				if _, err := b.Write(tc.send); err != nil {
					break // a closed, and the channel with it
				}
				select {
				case <-a.Done():
				default:
					continue
				}
				break
			}
			select {
			case <-a.Done():
				if tc.alive {
					t.Fatalf("closed while packets were flowing: %v", a.Err())
				}
				if !errors.Is(a.Err(), ErrIdle) {
					t.Fatalf("Err = %v, want ErrIdle", a.Err())
				}
				if a.Heard() {
					t.Error("Heard after only junk")
				}
			default:
				if !tc.alive {
					t.Fatalf("still open after %v of junk, idle timeout %v", 3*timeout, timeout)
				}
				if !a.Heard() {
					t.Error("not Heard after packets")
				}
			}
		})
	}
}
