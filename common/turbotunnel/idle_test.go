package turbotunnel

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"
)

// fakeTimer records what a pacer does to a KCP session.
type fakeTimer struct {
	interval int
	ackNow   bool
	srtt     int32
	calls    []string
}

func (f *fakeTimer) GetSRTT() int32 { return f.srtt }

func (f *fakeTimer) SetNoDelay(nodelay, interval, resend, nc int) {
	if nodelay != -1 || resend != -1 || nc != -1 {
		f.calls = append(f.calls, "changed more than the interval")
	}
	f.interval = interval
	f.calls = append(f.calls, fmt.Sprintf("interval %d", interval))
}

func (f *fakeTimer) SetACKNoDelay(on bool) {
	f.ackNow = on
	f.calls = append(f.calls, fmt.Sprintf("ack now %v", on))
}

func data(sn, una uint32) []byte { return kcpPacket(kcp.IKCP_CMD_PUSH, sn, una, 100, "x") }
func ack(sn, una uint32) []byte  { return kcpPacket(kcp.IKCP_CMD_ACK, sn, una, 100, "") }

// TestIdlePacer drives a pacer through scripted steps. Each step is one of
// "sent", "received" (a packet), "begin", "end" (a write), or "sweep"
// (at the step's time), and lists the calls the pacer should make.
func TestIdlePacer(t *testing.T) {
	fast := fmt.Sprintf("interval %d", serverUpdateInterval)
	slow := fmt.Sprintf("interval %d", idleUpdateInterval)
	type step struct {
		op    string
		pkt   []byte
		at    time.Duration // for sweeps, since the start
		srtt  int32         // for "srtt": the session's round trip from now on, ms
		calls []string
		idle  bool // for sweeps: what sweep reports
	}
	sweep := func(at time.Duration, idle bool, calls ...string) step {
		return step{op: "sweep", at: at, idle: idle, calls: calls}
	}
	sent := func(p []byte) step { return step{op: "sent", pkt: p} }
	received := func(p []byte, calls ...string) step { return step{op: "received", pkt: p, calls: calls} }
	begin := func(calls ...string) step { return step{op: "begin", calls: calls} }
	end := step{op: "end"}
	sleep := func(d time.Duration) step { return step{op: "sleep", at: d} }
	rtt := func(ms int32) step { return step{op: "srtt", srtt: ms} }
	// deep sends segments 0 to 99, more than deepInFlight.
	deep := []step{begin(), sent(data(0, 0)), sent(data(99, 0)), end}
	s := time.Second
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a new session with nothing in flight goes idle", []step{
			sweep(s, true, slow, "ack now true"),
			sweep(2*s, true),
		}},
		{"unacknowledged data keeps the short interval while the client talks", []step{
			begin(), sent(data(0, 0)), sent(data(1, 0)), sent(data(2, 0)), end,
			received(ack(0, 2)),
			sweep(s, false),
			received(ack(1, 2)),
			sweep(2*s, false),
			received(ack(2, 3)),
			sweep(3*s, false), // the acknowledgment was activity
			sweep(4*s, true, slow, "ack now true"),
		}},
		{"a client silent with data in flight", []step{
			begin(), sent(data(0, 0)), sent(data(1, 0)), end,
			sweep(s, false), // the data is new
			sweep(2*s, true, slow, "ack now true"),
			sent(data(0, 0)), // KCP retransmits: nothing new
			sweep(3*s, true),
			received(ack(0, 1), fast), // any packet ends a silent spell
			sweep(4*s, false, "ack now false"),
			sweep(5*s, true, slow, "ack now true"), // silent again
			received(ack(1, 2), fast),
			sweep(6*s, false, "ack now false"), // activity
			sweep(7*s, true, slow, "ack now true"),
		}},
		{"new data keeps the short interval though the client is silent", []step{
			begin(), sent(data(0, 0)), end,
			sweep(s, false),
			begin(), sent(data(1, 0)), end,
			sweep(2*s, false),
			sweep(3*s, true, slow, "ack now true"),
			begin(fast), sent(data(2, 0)), end,
			sweep(4*s, false, "ack now false"),
		}},
		{"a write blocked on the window while the client is silent", []step{
			begin(), sent(data(0, 0)), // the write waits for the window
			sweep(s, false),
			sweep(2*s, true, slow, "ack now true"),
			received(ack(0, 1), fast),
			sweep(3*s, false, "ack now false"),
		}},
		{"a write that began keeps a silent client's session fast", []step{
			begin(), sent(data(0, 0)), end,
			sweep(s, false),
			begin(), end, // its data waits in KCP
			sweep(2*s, false),
			sweep(3*s, true, slow, "ack now true"),
		}},
		{"a silent client's session waits for the server to acknowledge", []step{
			received(data(0, 0)),
			begin(), sent(data(0, 0)), end,
			sweep(s, false),
			sweep(2*s, false), // the client's data is not acknowledged
			sent(ack(0, 1)),
			sweep(3*s, true, slow, "ack now true"), // sent only: silent
		}},
		{"a write leaves the idle interval at once", []step{
			sweep(s, true, slow, "ack now true"),
			begin(fast), sent(data(0, 0)), end,
			sweep(2*s, false, "ack now false"),
			received(ack(0, 1)),
			sweep(3*s, false), // activity
			sweep(4*s, true, slow, "ack now true"),
		}},
		{"acknowledgments stay immediate until the idle update has run", []step{
			sweep(0, true, slow, "ack now true"),
			begin(fast), sent(data(0, 0)), end,
			received(ack(0, 1)),
			sweep(ackHoldAfterIdle/3, false),
			received(data(0, 1)), // the client keeps talking
			sweep(2*ackHoldAfterIdle/3, false),
			received(data(1, 1)),
			// The hold began at the write, a little after the start.
			sweep(ackHoldAfterIdle+100*time.Millisecond, false, "ack now false"),
		}},
		{"the first data after the hold ends it", []step{
			sweep(0, true, slow, "ack now true"),
			begin(fast), end,
			received(data(0, 0)), // within the hold
			sleep(ackHoldAfterIdle),
			received(data(1, 0), "ack now false"),
			received(data(2, 0)),
		}},
		{"received data waits for the server's acknowledgment", []step{
			received(data(0, 0)), received(data(1, 0)),
			sweep(s, false),
			sweep(2*s, false), // acknowledged up to 0 only
			sent(ack(1, 2)),
			sweep(3*s, false),
			sweep(4*s, true, slow, "ack now true"),
		}},
		{"data received while idle ends it", []step{
			sweep(s, true, slow, "ack now true"),
			received(ack(0, 0)), // an acknowledgment alone does not
			sweep(2*s, true),
			received(data(0, 0), fast),
			sweep(3*s, false, "ack now false"),
			sent(ack(0, 1)),
			sweep(4*s, false), // activity
			sweep(5*s, true, slow, "ack now true"),
		}},
		{"a shut receive window needs the timer", []step{
			sent(kcpPacket(kcp.IKCP_CMD_ACK, 0, 0, 0, "")),
			sweep(s, false),
			sweep(2*s, false),
			sent(ack(0, 0)), // the window opened
			sweep(3*s, false),
			sweep(4*s, true, slow, "ack now true"),
		}},
		{"the window shuts after data ended the idle interval", []step{
			sweep(s, true, slow, "ack now true"),
			received(data(0, 0), fast),
			sent(kcpPacket(kcp.IKCP_CMD_ACK, 0, 1, 0, "")),
			sweep(2*s, false, "ack now false"),
			sweep(3*s, false),
		}},
		{"a write whose data has not left yet", []step{
			begin(), end,
			sweep(s, false),
			sweep(2*s, false),
			sent(data(0, 0)),
			received(ack(0, 1)),
			sweep(3*s, false),
			sweep(4*s, true, slow, "ack now true"),
		}},
		{"a write under way", []step{
			begin(),
			sweep(s, false),
			sweep(2*s, false),
		}},
		{"a write racing a sweep that went idle", []step{
			sweep(s, true, slow, "ack now true"),
			// A data packet seen while idle without beginWrite: the sweep
			// restores the timer for its retransmission.
			sent(data(0, 0)),
			sweep(2*s, false, fast),
		}},
		{"retransmissions do not move the highest sequence number back", []step{
			sent(data(5, 0)), sent(data(3, 0)),
			received(ack(3, 4)),
			sweep(s, false),
			sweep(2*s, true, slow, "ack now true"), // 5 is not acknowledged: silent
			received(ack(5, 6), fast),
			sweep(3*s, false, "ack now false"),
			sweep(4*s, true, slow, "ack now true"),
		}},
		{"sequence numbers wrap", []step{
			sent(data(0xfffffffe, 0)), sent(data(0xffffffff, 0)),
			received(ack(0xfffffffe, 0xffffffff)),
			sweep(s, false),
			received(ack(0xfffffffe, 0xffffffff)),
			sweep(2*s, false),
			sent(data(0, 0)),
			received(ack(0, 1)), // past the wrap: everything acknowledged
			sweep(3*s, false),
			sweep(4*s, true, slow, "ack now true"),
		}},
		{"a deep send buffer on a long round trip slows the busy timer", slices.Concat(deep, []step{
			rtt(800),
			sweep(s, false, "interval 50"),
			received(ack(50, 20)),
			sweep(2*s, false), // 80 in flight
			rtt(1200),
			received(ack(60, 20)),
			sweep(3*s, false, "interval 75"),
			received(ack(61, 40)), // 60 in flight: shallow
			sweep(4*s, false, fast),
		})},
		{"a short round trip keeps the short interval", slices.Concat(deep, []step{
			rtt(150),
			sweep(s, false),
			rtt(170),
			received(ack(1, 0)),
			sweep(2*s, false), // 170/16 is still 10
		})},
		{"the busy interval stays within the idle one", slices.Concat(deep, []step{
			rtt(30000),
			sweep(s, false, slow),
		})},
		{"a shut receive window keeps the short busy interval", slices.Concat(deep, []step{
			rtt(800),
			sweep(s, false, "interval 50"),
			sent(kcpPacket(kcp.IKCP_CMD_ACK, 0, 0, 0, "")),
			received(ack(1, 0)),
			sweep(2*s, false, fast),
			sent(ack(0, 0)), // the window opened
			received(ack(2, 0)),
			sweep(3*s, false, "interval 50"),
		})},
		{"the busy interval starts short after an idle spell", slices.Concat(deep, []step{
			rtt(800),
			sweep(s, false, "interval 50"),
			received(ack(99, 100)),
			sweep(2*s, false, fast), // activity; nothing in flight
			sweep(3*s, true, slow, "ack now true"),
			begin(fast), sent(data(199, 100)), end,
			sweep(4*s, false, "ack now false", "interval 50"),
		})},
		{"a packet that does not parse is activity only", []step{
			received([]byte{1, 2, 3}),
			sent([]byte{4}),
			sweep(s, false),
			sweep(2*s, true, slow, "ack now true"),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &fakeTimer{interval: serverUpdateInterval}
			p := newIdlePacer(ft)
			start := time.Now()
			for i, st := range tc.steps {
				ft.calls = nil
				switch st.op {
				case "sent":
					p.sent(st.pkt)
				case "received":
					p.received(st.pkt)
				case "begin":
					p.beginWrite()
				case "end":
					p.endWrite()
				case "sleep":
					time.Sleep(st.at)
				case "srtt":
					ft.srtt = st.srtt
				case "sweep":
					if idle := p.sweep(start.Add(st.at)); idle != st.idle {
						t.Errorf("step %d: sweep at %v reported idle=%v, want %v", i, st.at, idle, st.idle)
					}
				}
				if !slices.Equal(ft.calls, st.calls) {
					t.Fatalf("step %d (%s): calls %q, want %q", i, st.op, ft.calls, st.calls)
				}
			}
		})
	}
}

// TestServerSessionIdles lets a real session fall quiet, checks that the
// server's session goes idle, and that exchanges after each quiet spell go
// as on a busy session. The server replies to each request only after
// replyDelay, longer than the client's retransmission timeout, so the
// request must be acknowledged on its own and at once: held for the idle
// timer, the client's round-trip estimate grows towards the idle interval,
// and it may retransmit.
func TestServerSessionIdles(t *testing.T) {
	const msgSize, replyDelay = 1000, 300 * time.Millisecond
	srv := newStreamServer(t, func(st *smux.Stream) {
		defer st.Close()
		mode := make([]byte, 1)
		if _, err := io.ReadFull(st, mode); err != nil {
			return
		}
		if mode[0] == 'e' {
			io.Copy(st, st)
			return
		}
		buf := make([]byte, msgSize)
		for {
			if _, err := io.ReadFull(st, buf); err != nil {
				return
			}
			time.Sleep(replyDelay)
			if _, err := st.Write(buf); err != nil {
				return
			}
		}
	})
	_, _, _, sess := dialSession(t, srv)
	openMode := func(mode string) net.Conn {
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := io.WriteString(st, mode); err != nil {
			t.Fatal(err)
		}
		return st
	}
	bulk, requests := openMode("e"), openMode("d")
	echoTransfer(t, bulk, 256<<10, nil)

	idle := func() bool {
		var pacers []*idlePacer
		srv.kcpLn.sessions.Range(func(_, v any) bool {
			pacers = append(pacers, v.(*idlePacer))
			return true
		})
		if len(pacers) != 1 {
			t.Fatalf("%d paced sessions, want 1", len(pacers))
		}
		pacers[0].mu.Lock()
		defer pacers[0].mu.Unlock()
		return pacers[0].idle
	}
	waitIdle := func() {
		t.Helper()
		waitForWithin(t, 10*idleSweep, idle, "the server's session to go idle")
	}
	waitIdle()
	// Let the listener's count catch up.
	time.Sleep(2 * idleSweep)
	if n := srv.kcpLn.IdleSessions(); n != 1 {
		t.Fatalf("IdleSessions = %d, want 1", n)
	}
	// The client checks for retransmissions every 10 ms instead of 100, so
	// that an acknowledgment the server holds for its idle timer (up to
	// idleUpdateInterval) outlasts the client's timeout (100 ms at least)
	// in most exchanges, and shows as a retransmission.
	sess.kcp.SetNoDelay(-1, 10, -1, -1)

	buf := make([]byte, msgSize)
	// exchange makes one request and returns what was wrong with it, if
	// anything.
	exchange := func(i int) string {
		t.Helper()
		start := time.Now()
		msg := strings.Repeat(fmt.Sprint(i%10), msgSize)
		if _, err := io.WriteString(requests, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(requests, buf); err != nil {
			t.Fatal(err)
		}
		if string(buf) != msg {
			t.Fatalf("exchange %d: reply differs", i)
		}
		if took := time.Since(start); took > replyDelay+idleSweep {
			return fmt.Sprintf("exchange %d took %v, want about %v", i, took, replyDelay)
		}
		return ""
	}
	// The client's smoothed RTT moves by an eighth of each sample (one
	// per exchange), so after six rounds it still holds a fifth of what
	// the bulk transfer left (tens of milliseconds on a loaded machine);
	// a stall of the machine raises it by an eighth of the stall, and
	// makes a round slow, or KCP retransmit once it passes 100 ms. More
	// rounds (up to 15) let such a start or stall pass: the last six
	// rounds must each be quick and retransmit nothing, and leave the RTT
	// under the limit. Acknowledgments held for the idle timer would keep
	// it near half the idle interval, and retransmit, through every round.
	limit := int32(idleUpdateInterval / 8)
	clean := 0          // rounds in a row that went as they should
	var faults []string // what was wrong in the rounds that did not
	for i := 0; i < 15 && (clean < 6 || sess.kcp.GetSRTT() > limit); i++ {
		retrans0 := kcp.DefaultSnmp.Copy().RetransSegs
		waitIdle()
		// The first request finds the session idle. The second comes
		// right after the reply, which ended the idle interval; kcp-go's
		// next update is still the one it scheduled at that interval.
		var round []string
		for _, j := range []int{2 * i, 2*i + 1} {
			if f := exchange(j); f != "" {
				round = append(round, f)
			}
		}
		if n := kcp.DefaultSnmp.Copy().RetransSegs - retrans0; n != 0 {
			round = append(round, fmt.Sprintf("round %d: %d segments retransmitted on loopback: acknowledgments were late", i, n))
		}
		if len(round) > 0 {
			clean = 0
			faults = append(faults, round...)
		} else {
			clean++
		}
	}
	if clean < 6 {
		t.Errorf("only the last %d rounds went as they should, want 6:\n%s", clean, strings.Join(faults, "\n"))
	}
	if srtt := sess.kcp.GetSRTT(); srtt > limit {
		t.Errorf("client's smoothed RTT is %d ms, want at most %d: the server's acknowledgments waited", srtt, limit)
	}
	// Busy again, then idle again.
	echoTransfer(t, bulk, 256<<10, nil)
	waitIdle()

	// A closed session is no longer paced.
	srv.latestMux.Load().Close()
	n := 0
	srv.kcpLn.sessions.Range(func(_, _ any) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d paced sessions after the server closed the session", n)
	}
}

// TestDeepSessionSlowsItsTimer downloads over a path that carries 1 MB/s,
// so that the server's session holds hundreds of segments in flight over a
// round trip of half a second or more, and checks that its update interval follows
// the round trip (busyInterval) and comes back once the download is over.
func TestDeepSessionSlowsItsTimer(t *testing.T) {
	const size, rate = 3 << 20, 1e6
	srv := newStreamServer(t, serveZeros(size))
	sess, err := DialSession(NewRedialPacketConn(NewClientID(), throttledDialer(srv, rate).Dial, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	interval := func() int {
		var iv int
		srv.kcpLn.sessions.Range(func(_, v any) bool {
			p := v.(*idlePacer)
			p.mu.Lock()
			defer p.mu.Unlock()
			if !p.idle {
				iv = p.interval
			}
			return false
		})
		return iv
	}

	done := make(chan error, 1)
	go func() {
		n, err := io.Copy(io.Discard, requestStream(t, sess))
		if err == nil && n != size {
			err = fmt.Errorf("read %d bytes, want %d", n, size)
		}
		done <- err
	}()
	longest := 0
	tick := time.NewTicker(idleSweep / 2)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			break wait
		case <-tick.C:
			longest = max(longest, interval())
		}
	}
	srtt := sess.kcp.GetSRTT()
	t.Logf("longest busy interval %d ms; client's smoothed RTT at the end %d ms", longest, srtt)
	// Runs here saw the server's round trip reach 500–700 ms (intervals of
	// 31–42 ms); twice the short interval needs 320 ms.
	if longest < 2*serverUpdateInterval {
		t.Errorf("the server's busy interval reached %d ms at most, want at least %d", longest, 2*serverUpdateInterval)
	}
	if longest > idleUpdateInterval {
		t.Errorf("the server's busy interval reached %d ms, above the idle interval %d", longest, idleUpdateInterval)
	}
	// Everything acknowledged: the short interval, or idle.
	waitForWithin(t, 8*idleSweep, func() bool {
		iv := interval()
		return iv == 0 || iv == serverUpdateInterval
	}, "the server's session to leave the long busy interval")
}
