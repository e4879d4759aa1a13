package turbotunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/snowflake-go/snowflake/common/encapsulation"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// echoServer is a minimal in-process turbotunnel server over TCP: each TCP
// connection is a transport; each smux stream is echoed back, or given to
// serve if set.
type echoServer struct {
	ln    net.Listener
	pconn *QueuePacketConn
	kcpLn *Listener
	serve func(*smux.Stream)
	wg    sync.WaitGroup
	conns atomic.Int32 // transports seen
	// streamsEnded counts streams that ended with the client's FIN.
	streamsEnded atomic.Int32
	// latest is the KCP session accepted last, latestMux its smux session.
	latest    atomic.Pointer[kcp.UDPSession]
	latestMux atomic.Pointer[smux.Session]
}

func newEchoServer(t *testing.T) *echoServer { return newStreamServer(t, nil) }

// newStreamServer is newEchoServer with serve handling each stream.
func newStreamServer(t testing.TB, serve func(*smux.Stream)) *echoServer {
	t.Helper()
	return newWrappedStreamServer(t, serve, nil)
}

// newWrappedStreamServer is newStreamServer with the KCP listener's packet
// conn passed through wrap, if not nil.
func newWrappedStreamServer(t testing.TB, serve func(*smux.Stream), wrap func(net.PacketConn) net.PacketConn) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, pconn: NewQueuePacketConn(ClientID{}, time.Minute), serve: serve}
	var under net.PacketConn = s.pconn
	if wrap != nil {
		under = wrap(s.pconn)
	}
	s.kcpLn, err = Listen(under)
	if err != nil {
		t.Fatal(err)
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.acceptTransports() }()
	go func() { defer s.wg.Done(); s.acceptSessions() }()
	t.Cleanup(func() {
		ln.Close()
		s.kcpLn.Close()
		s.pconn.Close()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) acceptTransports() {
	testenv.AcceptEach(s.ln.Accept, func(conn net.Conn) {
		s.conns.Add(1)
		s.transport(conn)
	})
}

func (s *echoServer) transport(conn net.Conn) {
	defer conn.Close()
	id, err := ReadPreamble(conn)
	if err != nil {
		return
	}
	q, release := s.pconn.Attach(id)
	defer release()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer conn.Close()
		for {
			select {
			case p := <-q:
				_, err := encapsulation.WriteData(conn, p)
				s.pconn.Release(p)
				if err != nil {
					return
				}
			case <-s.pconn.Done():
				return
			}
		}
	}()
	r := bufio.NewReader(conn)
	buf := make([]byte, MaxPacketSize)
	for {
		n, err := encapsulation.ReadData(r, buf)
		if err != nil {
			break
		}
		s.pconn.QueueIncoming(buf[:n], id)
	}
	conn.Close()
	<-done
}

func (s *echoServer) acceptSessions() {
	var sessions []io.Closer
	defer func() {
		for _, c := range sessions {
			c.Close()
		}
	}()
	for {
		conn, err := s.kcpLn.AcceptKCP()
		if err != nil {
			return
		}
		mux, err := s.kcpLn.Session(conn)
		if err != nil {
			conn.Close()
			continue
		}
		sessions = append(sessions, mux, conn)
		s.latest.Store(conn)
		s.latestMux.Store(mux)
		s.wg.Go(func() {
			testenv.AcceptEach(mux.AcceptStream, func(st *smux.Stream) {
				if s.serve != nil {
					s.serve(st)
					return
				}
				if _, err := io.Copy(st, st); err == nil {
					s.streamsEnded.Add(1)
				}
			})
		})
	}
}

// echoTransfer writes size random bytes to st while reading the echo, and
// compares SHA-256 digests. Halfway through it calls mid (if not nil).
func echoTransfer(t *testing.T, st net.Conn, size int, mid func()) {
	t.Helper()
	sent, recv := sha256.New(), sha256.New()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 32*1024)
		for written := 0; written < size; {
			n := min(len(buf), size-written)
			rand.Read(buf[:n])
			sent.Write(buf[:n])
			if _, err := st.Write(buf[:n]); err != nil {
				errc <- err
				return
			}
			written += n
			if mid != nil && written >= size/2 && written-n < size/2 {
				mid()
			}
		}
		errc <- nil
	}()
	st.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.CopyN(recv, st, int64(size)); err != nil {
		t.Fatalf("reading echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if [32]byte(sent.Sum(nil)) != [32]byte(recv.Sum(nil)) {
		t.Fatal("echoed bytes differ from sent bytes (SHA-256 mismatch)")
	}
}

// requestStream opens a stream on sess and writes one byte, the request a
// stream server of these tests waits for. The test's cleanup closes it.
func requestStream(t testing.TB, sess *Session) net.Conn {
	t.Helper()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	return st
}

// dialEchoSession starts an echo server and dials a session to it through
// a CuttableDialer; the test's cleanup closes the session.
func dialEchoSession(t *testing.T) (*echoServer, *testenv.CuttableDialer, *RedialPacketConn, *Session) {
	t.Helper()
	return dialSession(t, newEchoServer(t))
}

func dialSession(t *testing.T, srv *echoServer) (*echoServer, *testenv.CuttableDialer, *RedialPacketConn, *Session) {
	t.Helper()
	return dialWrappedSession(t, srv, nil)
}

// dialWrappedSession is dialSession with the session's packet conn passed
// through wrap, if not nil.
func dialWrappedSession(t *testing.T, srv *echoServer, wrap func(net.PacketConn) net.PacketConn) (*echoServer, *testenv.CuttableDialer, *RedialPacketConn, *Session) {
	t.Helper()
	d := testenv.NewCuttableDialer(func(ctx context.Context) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", srv.ln.Addr().String())
	})
	pconn := NewRedialPacketConn(NewClientID(), d.Dial, nil)
	var under net.PacketConn = pconn
	if wrap != nil {
		under = wrap(pconn)
	}
	sess, err := DialSession(under)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return srv, d, pconn, sess
}

func TestSessionEcho(t *testing.T) {
	_, _, _, sess := dialEchoSession(t)
	var wg sync.WaitGroup
	for range 3 {
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer st.Close()
			echoTransfer(t, st, 2<<20, nil)
		}()
	}
	wg.Wait()
	if sess.NumStreams() > 3 {
		t.Errorf("NumStreams = %d", sess.NumStreams())
	}
}

// TestBurstAcknowledgedAtOnce has the server send a series of small
// messages, with pauses in which the client sends nothing, and checks the
// server's smoothed RTT: the client acknowledges each message as soon as it
// has read it, so the estimate stays near the loopback round trip.
// Acknowledged on the client's update timer instead, it averages half the
// timer's interval.
func TestBurstAcknowledgedAtOnce(t *testing.T) {
	const messages, size, pause = 10, 1000, 150 * time.Millisecond
	srv := newStreamServer(t, func(st *smux.Stream) {
		defer st.Close()
		if _, err := st.Read(make([]byte, 1)); err != nil {
			return
		}
		for range messages {
			if _, err := st.Write(make([]byte, size)); err != nil {
				return
			}
			// Each message arrives alone, and is acknowledged before the
			// next.
			time.Sleep(pause)
		}
	})
	_, _, _, sess := dialSession(t, srv)
	st := requestStream(t, sess)
	if _, err := io.ReadFull(st, make([]byte, messages*size)); err != nil {
		t.Fatal(err)
	}
	srtt := srv.latest.Load().GetSRTT()
	// A tenth of the pause: far above loopback, far below what the
	// client's timer would add.
	if limit := int32(pause / time.Millisecond / 10); srtt > limit {
		t.Errorf("server's smoothed RTT is %d ms, want at most %d ms: acknowledgments wait for the client's timer", srtt, limit)
	}
}

// TestClientUpdateInterval checks the timer interval a client session got,
// through the retransmission timeout KCP derives from it: the RTT (well
// under a millisecond here) plus at least the interval.
func TestClientUpdateInterval(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wrap     func(net.PacketConn) net.PacketConn
		interval uint32
	}{
		{"bursts told", nil, clientUpdateInterval},
		// Only the embedded interface's methods: no readBurst.
		{"bursts not told", func(c net.PacketConn) net.PacketConn { return struct{ net.PacketConn }{c} }, timerAckUpdateInterval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, sess := dialWrappedSession(t, newEchoServer(t), tc.wrap)
			st, err := sess.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			// KCP sets the timeout to SRTT + max(interval, 4 × RTT
			// variance). A loaded machine can make the RTT tens of
			// milliseconds, so the timeout less the SRTT is checked,
			// and only once the variance no longer hides the
			// interval (more echoes bring it down).
			var srtt, rttvar int32
			var rto uint32
			for range 20 {
				echoTransfer(t, st, 1000, nil)
				// Three reads with no sample between them.
				for {
					srtt, rttvar, rto = sess.kcp.GetSRTT(), sess.kcp.GetSRTTVar(), sess.kcp.GetRTO()
					if srtt == sess.kcp.GetSRTT() && rttvar == sess.kcp.GetSRTTVar() {
						break
					}
				}
				if uint32(rttvar)*4 < tc.interval {
					break
				}
			}
			if uint32(rttvar)*4 >= tc.interval {
				t.Fatalf("RTT variance %d ms hides the interval %d ms", rttvar, tc.interval)
			}
			if got := int64(rto) - int64(srtt); got != int64(tc.interval) {
				t.Errorf("retransmission timeout %d ms with SRTT %d ms, want the interval %d ms on top", rto, srtt, tc.interval)
			}
		})
	}
}

// TestSessionSurvivesRedial cuts the transport in the middle of a transfer;
// the RedialPacketConn dials again with the same ClientID and the stream
// continues without losing a byte.
func TestSessionSurvivesRedial(t *testing.T) {
	srv, d, _, sess := dialEchoSession(t)
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	echoTransfer(t, st, 4<<20, d.Cut)
	if dials := d.Dials(); dials < 2 {
		t.Fatalf("dials = %d, want a redial", dials)
	}
	if srv.pconn.Clients() != 1 {
		t.Errorf("server has %d client queues, want 1 (same ClientID)", srv.pconn.Clients())
	}
}

func TestSessionClose(t *testing.T) {
	_, _, pconn, sess := dialEchoSession(t)
	sess.Close()
	sess.Close() // idempotent
	select {
	case <-sess.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if _, err := sess.OpenStream(); err == nil {
		t.Fatal("OpenStream after Close succeeded")
	}
	if _, _, err := pconn.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("pconn ReadFrom after Close = %v", err)
	}
}

// TestRedialBackoff: a failing dial is retried, and Close interrupts the
// wait.
func TestRedialBackoff(t *testing.T) {
	var calls atomic.Int32
	dial := func(ctx context.Context) (net.Conn, error) {
		calls.Add(1)
		return nil, errors.New("no proxy")
	}
	c := NewRedialPacketConn(NewClientID(), dial, nil)
	if _, err := c.WriteTo([]byte("queued"), ServerAddr{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return calls.Load() >= 2 }, "a second dial")
	start := time.Now()
	c.Close()
	if time.Since(start) > time.Second {
		t.Errorf("Close took %v", time.Since(start))
	}
	if _, err := c.WriteTo([]byte("x"), ServerAddr{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close = %v", err)
	}
}

// TestSessionCloseSendsFINs: a session closed right after its streams
// still sends their FINs, which the server's smux sees as the end of each
// stream; every time, not only when the background sender is quick.
func TestSessionCloseSendsFINs(t *testing.T) {
	srv := newEchoServer(t)
	for i := range 20 {
		pconn := NewRedialPacketConn(NewClientID(), func(ctx context.Context) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "tcp", srv.ln.Addr().String())
		}, nil)
		sess, err := DialSession(pconn)
		if err != nil {
			t.Fatal(err)
		}
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		echoTransfer(t, st, 1000, nil)
		before := srv.streamsEnded.Load()
		st.Close()
		start := time.Now()
		sess.Close()
		if d := time.Since(start); d > finFlushTimeout {
			t.Fatalf("round %d: Close took %v", i, d)
		}
		waitFor(t, func() bool { return srv.streamsEnded.Load() > before }, "the server to see the FIN")
	}
}

// TestRedialCloseFlushes: packets queued when Close is called still reach
// the transport.
func TestRedialCloseFlushes(t *testing.T) {
	a, b := net.Pipe()
	dialed := make(chan struct{})
	var once sync.Once
	c := NewRedialPacketConn(NewClientID(), func(ctx context.Context) (net.Conn, error) {
		first := false
		once.Do(func() { first = true; close(dialed) })
		if !first {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return a, nil
	}, nil)
	got := make(chan []string, 1)
	go func() {
		r := bufio.NewReader(b)
		if _, err := ReadPreamble(r); err != nil {
			got <- nil
			return
		}
		var ps []string
		buf := make([]byte, MaxPacketSize)
		for {
			n, err := encapsulation.ReadData(r, buf)
			if err != nil {
				got <- ps
				return
			}
			ps = append(ps, string(buf[:n]))
		}
	}()
	<-dialed
	waitFor(t, c.carrying.Load, "the transport to be carried")
	// Queue directly, as WriteTo would, but without waking the writer
	// first: Close must find them queued.
	for _, p := range []string{"one", "two", "three"} {
		c.send <- []byte(p)
	}
	c.Close()
	select {
	case ps := <-got:
		if len(ps) != 3 || ps[0] != "one" || ps[2] != "three" {
			t.Fatalf("transport got %q", ps)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("transport not closed")
	}
}

// TestRedialReadDeadlinePending: a deadline set while a ReadFrom is blocked
// applies to that ReadFrom, as net.PacketConn requires.
func TestRedialReadDeadlinePending(t *testing.T) {
	c := NewRedialPacketConn(NewClientID(), func(ctx context.Context) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}, nil)
	defer c.Close()
	errc := make(chan error, 1)
	read := func() {
		go func() {
			_, _, err := c.ReadFrom(make([]byte, MaxPacketSize))
			errc <- err
		}()
	}
	// wantDeadlineError waits for the pending ReadFrom to fail with a
	// deadline error, and fails the test with failure if it does not.
	wantDeadlineError := func(failure string) {
		t.Helper()
		select {
		case err := <-errc:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadFrom = %v, want a deadline error", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal(failure)
		}
	}

	read()
	time.Sleep(50 * time.Millisecond) // let ReadFrom block without a deadline
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	wantDeadlineError("a blocked ReadFrom ignored the deadline set meanwhile")

	// A deadline moved earlier while a ReadFrom waits for a later one.
	c.SetReadDeadline(time.Now().Add(time.Hour))
	read()
	time.Sleep(50 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	wantDeadlineError("a blocked ReadFrom ignored the earlier deadline set meanwhile")

	// Clearing the deadline after it passed makes reads wait again.
	c.SetReadDeadline(time.Time{})
	read()
	select {
	case err := <-errc:
		t.Fatalf("ReadFrom without deadline returned %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestRedialTransportsFailingAtOnce: transports that fail as soon as they
// are dialled are redialled with back-off, not in a busy loop.
func TestRedialTransportsFailingAtOnce(t *testing.T) {
	var calls atomic.Int32
	c := NewRedialPacketConn(NewClientID(), func(ctx context.Context) (net.Conn, error) {
		calls.Add(1)
		a, b := net.Pipe()
		b.Close() // the proxy hangs up at once
		return a, nil
	}, nil)
	time.Sleep(1500 * time.Millisecond)
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	// At most one at once, one after the first second's wait, maybe one
	// more as Close comes.
	if n := calls.Load(); n > 4 {
		t.Fatalf("%d dials in 1.5 s of transports failing at once, want back-off", n)
	}
}

// lifeCounter is a transport that counts what its reader vouches for as
// life, as a dataconn.Conn with ExplicitLife does.
type lifeCounter struct {
	net.Conn
	marks atomic.Int32
}

func (c *lifeCounter) MarkAlive() { c.marks.Add(1) }

// TestOnlyPacketsAreLife: the redial conn tells its transport of life for
// each KCP packet it reads, and for nothing else the stream may hold:
// padding, empty and runt data chunks, chunks too long for a packet, and
// data that does not parse as KCP segments.
func TestOnlyPacketsAreLife(t *testing.T) {
	client, peer := net.Pipe()
	tr := &lifeCounter{Conn: client}
	var dialled atomic.Bool
	pconn := NewRedialPacketConn(NewClientID(), func(ctx context.Context) (net.Conn, error) {
		if dialled.Swap(true) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return tr, nil
	}, nil)
	defer pconn.Close()
	go io.Copy(io.Discard, peer) // the preamble
	chunk := func(p []byte) []byte {
		b, _ := encapsulation.AppendData(nil, p)
		return b
	}
	lying := segment(kcp.IKCP_CMD_PUSH, "abc")
	lying[20]++ // announces a byte more than the chunk holds
	junk := join(
		append(encapsulation.AppendPrefix(nil, 50, false), make([]byte, 50)...),
		chunk(nil),
		chunk([]byte("runt")),
		chunk(make([]byte, MaxPacketSize+1)),
		chunk(lying),
		chunk(segment(0, "no such command")),
		chunk(join(segment(kcp.IKCP_CMD_ACK, ""), []byte{1, 2, 3})),
	)
	good := join(segment(kcp.IKCP_CMD_ACK, ""), segment(kcp.IKCP_CMD_PUSH, "payload"))
	go func() {
		peer.Write(junk)
		peer.Write(chunk(good))
	}()
	// KCP sees junk that is framed as a packet too (and drops it); the
	// good packet comes after all of it.
	buf := make([]byte, MaxPacketSize)
	deadline := time.Now().Add(5 * time.Second)
	for {
		pconn.SetReadDeadline(deadline)
		n, _, err := pconn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("the good packet did not arrive: %v", err)
		}
		if bytes.Equal(buf[:n], good) {
			break
		}
	}
	if n := tr.marks.Load(); n != 1 {
		t.Fatalf("%d marks of life, want 1: only the KCP packet counts", n)
	}
}

// TestSessionTrafficIsLife: the packets of a real session, both its data
// and KCP's acknowledgments, count as life.
func TestSessionTrafficIsLife(t *testing.T) {
	srv := newEchoServer(t)
	var tr atomic.Pointer[lifeCounter]
	pconn := NewRedialPacketConn(NewClientID(), func(ctx context.Context) (net.Conn, error) {
		var nd net.Dialer
		c, err := nd.DialContext(ctx, "tcp", srv.ln.Addr().String())
		if err != nil {
			return nil, err
		}
		lc := &lifeCounter{Conn: c}
		tr.Store(lc)
		return lc, nil
	}, nil)
	sess, err := DialSession(pconn)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	echoTransfer(t, st, 256<<10, nil)
	if n := tr.Load().marks.Load(); n == 0 {
		t.Fatal("a session's packets did not count as life")
	}
}
