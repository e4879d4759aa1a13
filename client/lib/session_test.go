package client

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/turbotunnel"
)

// fakePeer stands in for a connected proxy: a conn that is closed when the
// test says so. heard says whether it delivered anything from the bridge.
type fakePeer struct {
	net.Conn
	id    int
	done  chan struct{}
	once  sync.Once
	heard atomic.Bool
}

func newFakePeer(id int) *fakePeer {
	a, _ := net.Pipe()
	return &fakePeer{Conn: a, id: id, done: make(chan struct{})}
}

func (p *fakePeer) Close() error {
	p.once.Do(func() { close(p.done); p.Conn.Close() })
	return nil
}
func (p *fakePeer) Done() <-chan struct{} { return p.done }
func (p *fakePeer) Err() error            { return nil }
func (p *fakePeer) Heard() bool           { return p.heard.Load() }

// fakeRendezvous hands out fake peers and records them, and when each
// rendezvous began; after limit rendezvous it blocks, so a runaway
// collector does not spin. onPeer, if set, sees each peer before it is
// handed out (to hang it up at once, say).
type fakeRendezvous struct {
	limit  int
	onPeer func(*fakePeer)
	mu     sync.Mutex
	peers  []*fakePeer
	starts []time.Time
	calls  atomic.Int32
}

func (f *fakeRendezvous) connect(ctx context.Context) (peerConn, error) {
	// Count the call and record its peer together: a test that saw the
	// count (waitCalls) then takes the peer.
	f.mu.Lock()
	n := int(f.calls.Add(1))
	f.starts = append(f.starts, time.Now())
	if n > f.limit {
		f.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	p := newFakePeer(n)
	f.peers = append(f.peers, p)
	f.mu.Unlock()
	if f.onPeer != nil {
		f.onPeer(p)
	}
	return p, nil
}

// gaps returns the time between each rendezvous and the one before.
func (f *fakeRendezvous) gaps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var d []time.Duration
	for i := 1; i < len(f.starts); i++ {
		d = append(d, f.starts[i].Sub(f.starts[i-1]))
	}
	return d
}

func (f *fakeRendezvous) peer(i int) *fakePeer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.peers) {
		return nil
	}
	return f.peers[i]
}

// waitCalls waits until the fake has run n rendezvous.
func (f *fakeRendezvous) waitCalls(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for int(f.calls.Load()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d rendezvous after 5 s, want %d", f.calls.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func fakeTransport(max int, f *fakeRendezvous) *Transport {
	t := &Transport{cfg: Config{Max: max}, logger: slog.New(slog.DiscardHandler), connectPeer: f.connect}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

// TestSpareDeathsDoNotSpin: spare peers that die while queued (as every
// spare does after StaleTimeout, since nobody reads it) must not fill the
// queue so that each new peer is thrown away at once and replaced by
// another rendezvous, in a loop without pause.
func TestSpareDeathsDoNotSpin(t *testing.T) {
	f := &fakeRendezvous{limit: 50}
	tr := fakeTransport(2, f)
	defer tr.Close()
	s := tr.newSession()
	defer s.stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	active, err := s.dial(ctx) // peer 1 carries traffic
	if err != nil {
		t.Fatal(err)
	}
	// Peer 2 waits as the spare; it goes stale, and so does its successor.
	f.waitCalls(t, 2)
	f.peer(1).Close()
	f.waitCalls(t, 3)
	f.peer(2).Close()
	f.waitCalls(t, 4)

	time.Sleep(300 * time.Millisecond)
	if n := f.calls.Load(); n != 4 {
		t.Fatalf("%d rendezvous, want 4: one per peer that died", n)
	}
	// The live spare is the one handed out next.
	active.Close()
	next, err := s.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id := next.(*fakePeer).id; id != 4 {
		t.Fatalf("dial handed out peer %d, want the live spare 4", id)
	}
}

// TestCloseEndsDials: Close, called while Dials wait for their first proxy,
// makes them return at once and waits for them (the Transport is documented
// as safe for concurrent use), and a Dial after Close fails.
func TestCloseEndsDials(t *testing.T) {
	f := &fakeRendezvous{limit: 0} // no proxy ever connects
	tr := fakeTransport(1, f)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const dials = 4
	errs := make(chan error, dials)
	for range dials {
		go func() {
			_, err := tr.Dial(ctx)
			errs <- err
		}()
	}
	f.waitCalls(t, dials)
	start := time.Now()
	tr.Close()
	for range dials {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Dial during Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Dial still waiting 5 s after Close")
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close and the Dials took %v", took)
	}
	if _, err := tr.Dial(ctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Dial after Close: %v, want net.ErrClosed", err)
	}
}

// TestCloseEndsConns: Close ends the conns Dial returned, as documented,
// so their users are not left reading a session whose proxies are gone
// until smux's keep-alive gives up ten minutes later.
func TestCloseEndsConns(t *testing.T) {
	f := &fakeRendezvous{limit: 1}
	tr := fakeTransport(1, f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tr.Close()
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		read <- err
	}()
	select {
	case err := <-read:
		if err == nil {
			t.Error("Read after Close succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still waiting 5 s after the Transport closed")
	}
}

// TestHangUpsBackOff: a proxy that accepts and hangs up at once, again and
// again, must not make the client rendezvous again at once each time: the
// attempts slow down as after failed ones, so a broken or hostile proxy
// cannot make a client hammer the broker.
func TestHangUpsBackOff(t *testing.T) {
	const attempts = 4
	f := &fakeRendezvous{limit: attempts, onPeer: func(p *fakePeer) { p.Close() }}
	tr := fakeTransport(1, f)
	defer tr.Close()
	s := tr.newSession()
	defer s.stop()
	// The waits are FirstRetry, then twice and four times that.
	deadline := time.Now().Add(8*FirstRetry + 5*time.Second)
	for f.calls.Load() < attempts && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	gaps := f.gaps()
	if len(gaps) < attempts-1 {
		t.Fatalf("%d rendezvous in %v, want %d", len(gaps)+1, 8*FirstRetry+5*time.Second, attempts)
	}
	for i, gap := range gaps[:attempts-1] {
		if want := FirstRetry << i; gap < want {
			t.Errorf("rendezvous %d came %v after a proxy that hung up at once, want at least %v (gaps %v)", i+2, gap, want, gaps)
		}
	}
}

// TestProvenPeerReplacedAtOnce: once a proxy has delivered data, its end
// is the ordinary departure of a good proxy, and the client looks for the
// next one at once, whatever failures came before it.
func TestProvenPeerReplacedAtOnce(t *testing.T) {
	f := &fakeRendezvous{limit: 3, onPeer: func(p *fakePeer) {
		if p.id == 1 {
			p.Close() // hangs up at once: the next attempt waits
		} else {
			p.heard.Store(true) // the bridge answered through it
		}
	}}
	tr := fakeTransport(1, f)
	defer tr.Close()
	s := tr.newSession()
	defer s.stop()
	f.waitCalls(t, 2)
	f.peer(1).Close()
	f.waitCalls(t, 3)
	gaps := f.gaps()
	if gaps[0] < FirstRetry {
		t.Errorf("rendezvous 2 came %v after a proxy that hung up at once, want at least %v", gaps[0], FirstRetry)
	}
	if gaps[1] >= FirstRetry {
		t.Errorf("rendezvous 3 came %v after a proxy that carried data, want it at once", gaps[1])
	}
}

// TestDialEndsWithDeadSession: the KCP/smux session starts before the
// first proxy, and smux ends it when nothing arrived for its keep-alive
// timeout (10 minutes). A Dial still waiting for a proxy then must fail,
// so tor gets its refusal and retries with a fresh session; otherwise it
// waited on, and the proxy that finally came was handed to nobody, its
// session kept seeking a replacement for each one that went stale.
func TestDialEndsWithDeadSession(t *testing.T) {
	f := &fakeRendezvous{limit: 0} // no proxy connects meanwhile
	tr := fakeTransport(1, f)
	defer tr.Close()
	tr.sessionStarted = func(s *turbotunnel.Session) {
		go s.Close() // as smux does when its keep-alive times out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := tr.Dial(ctx)
	if err == nil {
		t.Fatal("Dial succeeded on a dead session")
	}
	if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("Dial waited %v on a dead session: %v", time.Since(start).Round(time.Millisecond), err)
	}
}
