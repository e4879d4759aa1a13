package server

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/turbotunnel"
)

// laggingConn is the server's end of a connection whose reader falls
// behind its writer, as a goroutine does on a loaded machine. While lag is
// set, what a Read has taken from the socket is returned only some time
// after a Write has failed; if the conn was closed meanwhile, it is dropped,
// as the kernel drops what a socket received and nobody read when the
// socket is closed.
type laggingConn struct {
	net.Conn

	lagging     atomic.Bool
	writeFailed chan struct{}
	failOnce    sync.Once
	closed      chan struct{}
	closeOnce   sync.Once
}

func newLaggingConn(c net.Conn) *laggingConn {
	return &laggingConn{Conn: c, writeFailed: make(chan struct{}), closed: make(chan struct{})}
}

func (c *laggingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.lagging.Load() {
		return n, err
	}
	select {
	case <-c.writeFailed:
	case <-c.closed:
	case <-time.After(10 * time.Second):
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
		return n, err
	}
}

func (c *laggingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.failOnce.Do(func() { close(c.writeFailed) })
	}
	return n, err
}

func (c *laggingConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestClientFINAfterWriteError: what a client sent before its connection
// broke reaches its session even when the server's write to the broken
// connection fails before the server has read it. A client (or its proxy)
// closes its connection right after writing the FIN of its last stream;
// with data from the server still unread, the close is a reset, and the
// server's next write fails. Closing the connection on that failure threw
// away the FIN still waiting in the socket, and the session then lived on
// until its keep-alive timeout (TestClientClosedSessionEnds's rare "client
// closes and leaves" failure, which counted one write error).
func TestClientFINAfterWriteError(t *testing.T) {
	poke := make(chan struct{})
	orDial := func(ctx context.Context, _ string) (net.Conn, error) {
		a, b := net.Pipe()
		go func() {
			<-poke
			b.Write([]byte("late data from tor"))
		}()
		go func() {
			defer b.Close()
			io.Copy(b, b)
		}()
		return a, nil
	}
	ts := startServer(t, Config{DialOR: orDial})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var server *laggingConn
	carried := make(chan struct{})
	go func() {
		defer close(carried)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		server = newLaggingConn(c)
		ts.srv.carry(server, "")
	}()
	t.Cleanup(func() {
		ts.stop()
		<-carried
	})
	var dialled atomic.Bool
	dial := func(ctx context.Context) (net.Conn, error) {
		if dialled.Swap(true) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		// Close with a reset, as a socket closed with unread data does.
		c.(*net.TCPConn).SetLinger(0)
		return c, nil
	}
	sess, err := turbotunnel.DialSession(turbotunnel.NewRedialPacketConn(turbotunnel.NewClientID(), dial, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	st := openEcho(t, sess)
	waitStat(t, ts, "the stream", func(s Stats) bool { return s.StreamsActive == 1 })

	server.lagging.Store(true)
	st.Close()
	sess.Close()
	time.Sleep(100 * time.Millisecond) // the reset arrives
	close(poke)                        // the server writes to the reset connection

	waitStat(t, ts, "the client's FIN to end its stream", func(s Stats) bool { return s.StreamsActive == 0 })
	if ts.srv.Stats().Errors["write"] == 0 {
		t.Error("the server's write did not fail: the test did not test what it should")
	}
}
