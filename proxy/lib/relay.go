package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v5"
)

// Sizes of the copy loop.
const (
	// maxDCMessage is the largest data-channel message the proxy sends.
	// Old pion peers (Debian's 2.5.1 client) read into a 65535-byte
	// buffer and fail on anything larger. A client that announces a
	// smaller max-message-size gets messages of that size (dcMessageLimit).
	maxDCMessage = 65535
	// maxWSMessage is the largest WebSocket message the proxy sends.
	maxWSMessage = 32 << 10
	// wsReadLimit bounds one incoming WebSocket message. The bytes are
	// streamed, so this only stops a relay that never ends a message.
	wsReadLimit = 1 << 20
	// upPipeLimit and downPipeLimit are how many bytes may wait between
	// the two connections in each direction. Client→relay keeps more: the
	// relay is usually the faster side, so that queue seldom fills and
	// costs memory only in bursts. Relay→client fills whenever the client
	// is slower than the relay, which under load is every client, and the
	// data channel already buffers up to its high-water mark behind it.
	upPipeLimit   = 256 << 10
	downPipeLimit = 64 << 10
	// readBuf is the buffer of each reader. A data-channel read needs room
	// for a whole message.
	readBuf = 64 << 10
	// maxClientMessage is the largest data-channel message taken from a
	// client: the max-message-size that the proxy's answer announces in
	// the browser-like DTLS modes (Chromium's). The client reader starts
	// with readBuf and grows to this on the first longer message.
	maxClientMessage = 256 << 10
)

// errIdle is the teardown cause when nothing moved for the idle timeout
// (see idleWatch).
var errIdle = errors.New("relay idle timeout")

// errRelayQueueOverflow ends a connection whose relay sent more than the
// page can hold for a client that takes it slower. Only a browser without
// WebSocketStream reports it (websocket_js.go): it cannot hold the relay
// back, only queue.
var errRelayQueueOverflow = errors.New("relay receive queue overflow: the client takes less than the relay sends, and this browser has no WebSocketStream to hold the relay back")

// relayConn is the WebSocket to a relay: coder/websocket in the native
// build (relayconn_native.go), the browser's own in the js build
// (websocket_js.go), where coder/websocket hides the browser's socket and
// with it the amount the browser holds unsent.
type relayConn interface {
	// read reads what the relay sent, without message boundaries. It
	// returns io.EOF once the relay closed the connection with a close
	// frame, whatever its status.
	read(ctx context.Context, p []byte) (int, error)
	// write sends p as one binary message.
	write(ctx context.Context, p []byte) error
	// waitWritable returns true once the connection may take another
	// message, or false if done is closed first. A browser's send never
	// blocks: without it, a client that uploads faster than the relay
	// takes would pile up in the page.
	waitWritable(done <-chan struct{}) bool
	// abort ends the connection at once, and with it any read. In a
	// browser, which cannot drop a WebSocket without the closing
	// handshake, it starts the handshake and returns: waiting for it,
	// from a relay that hangs, takes the browser's own timeout (more
	// than a minute in Chromium), and would keep the client's data
	// channel open and its slot taken for as long.
	abort()
	// close closes the connection normally (status 1000). In a browser
	// it returns without waiting for the relay's answer.
	close()
	// lost returns a channel that receives why the connection lost what
	// the relay sent and the proxy had not read yet (a browser's queue
	// overflowed); nil if it never does. The relay reader would see it
	// only at its next read, and it is blocked while the client is slow,
	// which is when a queue overflows.
	lost() <-chan error
}

// deliveringCloser is a client connection that can wait until the client
// has received what was written to it, or timeout passed: the data channel
// of either build (nativeChannel in webrtc_native.go, which waits for
// SCTP's acknowledgments; jsChannel in datachannel_js.go, which closes the
// channel and waits for its close event).
type deliveringCloser interface {
	closeDelivered(timeout time.Duration)
}

// deliverTimeout bounds the wait for a client to receive the last of what
// the relay sent, after the relay's side ended: a client that vanished
// meanwhile holds its slot for as long. It also bounds the wait for the
// relay to take the last of what a client sent before it closed its
// channel (closeWatcher).
const deliverTimeout = 5 * time.Second

// closeWatcher is a client connection that tells when the client closed
// it, even while what the client sent before is still queued unread: the
// browser's data channel by its close event (jsChannel), pion's by the end
// of the SCTP association (nativeChannel). The relay then has
// deliverTimeout to take what is left. One that hangs would otherwise keep
// the slot until the peer connection fails (16 s in a browser, more than
// 30 s natively), because the channel's reader waits for room in the pipe
// to the relay before it can see the close.
type closeWatcher interface {
	clientClosed() <-chan struct{}
}

// errRelayUndrained ends a connection whose client closed its channel when
// the relay did not take what the client had sent within deliverTimeout.
var errRelayUndrained = fmt.Errorf("the relay did not take the client's last bytes within %v of the client's close", deliverTimeout)

// relayStats counts the bytes of one connection.
type relayStats struct {
	up, down atomic.Int64 // client→relay, relay→client
}

// relay copies bytes between a detached data channel and a WebSocket until
// either side ends, ctx is done, or nothing moves for idle (see idleWatch).
// No message to the client is longer than maxSend (dcMessageLimit).
// It closes both, and peer (the PeerConnection), and returns why it
// stopped (nil for a normal end).
//
// Closing the data channel alone is not enough: it only asks the client to
// reset the SCTP stream, and a read blocked on the stream returns when the
// client acknowledges. A client that vanished never does, so the teardown
// also closes the PeerConnection, which ends the SCTP association and with
// it every blocked read and write.
//
// Four goroutines: a reader and a writer per direction, joined by a pipe
// that coalesces. Each reader closes its pipe when its source ends; each
// writer drains its pipe and then tears the connection down, so data already
// read is delivered when the other side ends first. A failed read ends its
// side like a close, and a failed write ends only its own direction: a
// relay that drops its TCP connection without a close frame still has its
// last bytes delivered.
func relay(ctx context.Context, dc *webrtc.DataChannel, rwc io.ReadWriteCloser, peer io.Closer, ws relayConn,
	maxSend int, idle time.Duration, st *relayStats, total *Stats) error {
	up, down := newPipe(upPipeLimit), newPipe(downPipeLimit)

	var (
		once  sync.Once
		cause error
		done  = make(chan struct{})
		errMu sync.Mutex
		ended error // why one side ended, while the other direction drains
	)
	// sideEnded records why one side ended without tearing down: what was
	// already read from that side still drains to the other, whose writer
	// tears down after it.
	sideEnded := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if ended == nil {
			ended = err
		}
	}
	teardown := func(err error) {
		once.Do(func() {
			errMu.Lock()
			cause = cmp.Or(ended, err)
			errMu.Unlock()
			close(done)
			up.abort()
			down.abort()
			ws.abort()
			rwc.Close()
			peer.Close()
		})
	}

	watch := startIdleWatch(idle, dc.BufferedAmount, func() { teardown(errIdle) })

	gate := newSendGate(dc, total.Active.Load)

	var wg sync.WaitGroup
	relayReaderEnded := make(chan struct{})
	wg.Add(3)
	// Client → relay.
	go func() {
		defer wg.Done()
		defer up.closeWrite()
		buf := make([]byte, readBuf)
		for {
			n, err := rwc.Read(buf)
			if errors.Is(err, io.ErrShortBuffer) {
				// The message is longer than buf and waits, unread, at
				// the head of the stream: read it again with room for
				// the largest a client may send.
				if len(buf) < maxClientMessage {
					buf = make([]byte, maxClientMessage)
					continue
				}
				teardown(fmt.Errorf("read from client: message larger than %d bytes: %w", maxClientMessage, err))
				return
			}
			if n > 0 {
				st.up.Add(int64(n))
				total.addUp(n)
				if !up.write(buf[:n]) {
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					// In a browser the channel's queue overflowed and
					// what followed is lost: the cause must say so
					// rather than a normal close.
					sideEnded(fmt.Errorf("read from client: %w", err))
				}
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		out := make([]byte, maxWSMessage)
		for {
			n := up.read(out)
			if n == 0 {
				teardown(nil)
				return
			}
			if err := ws.write(ctx, out[:n]); err != nil {
				// The relay is gone, but what was read from it still
				// goes to the client: end the WebSocket reader, whose
				// pipe then drains.
				sideEnded(fmt.Errorf("write to relay: %w", err))
				up.abort()
				ws.abort()
				return
			}
			if !ws.waitWritable(done) {
				return
			}
		}
	}()
	// Relay → client. The reader is awaited apart, after the teardown:
	// from a relay that sends nothing, it ends only when the teardown
	// aborts the WebSocket.
	go func() {
		defer close(relayReaderEnded)
		defer down.closeWrite()
		buf := make([]byte, readBuf)
		for {
			n, err := ws.read(ctx, buf)
			if n > 0 {
				watch.received()
				st.down.Add(int64(n))
				total.addDown(n)
				if !down.write(buf[:n]) {
					return
				}
			}
			if err == nil {
				continue
			}
			if err != io.EOF && ctx.Err() == nil {
				select {
				case <-done:
				default:
					sideEnded(fmt.Errorf("read from relay: %w", err))
				}
			}
			return
		}
	}()
	go func() {
		defer wg.Done()
		out := make([]byte, maxSend)
		for {
			n := down.read(out)
			if n == 0 {
				select {
				case <-done:
				default:
					// The relay's side ended and everything it sent
					// was written to the channel: let it reach the
					// client before the teardown closes the peer.
					if d, ok := rwc.(deliveringCloser); ok {
						d.closeDelivered(deliverTimeout)
					}
				}
				teardown(nil)
				return
			}
			if _, err := rwc.Write(out[:n]); err != nil {
				// The client is gone, but what was read from it still
				// goes to the relay; its reader ends with the channel.
				sideEnded(fmt.Errorf("write to client: %w", err))
				down.abort()
				return
			}
			if !gate.wait(done) {
				return
			}
		}
	}()

	if cw, ok := rwc.(closeWatcher); ok {
		go func() {
			select {
			case <-cw.clientClosed():
			case <-done:
				return
			}
			t := time.NewTimer(deliverTimeout)
			defer t.Stop()
			select {
			case <-t.C:
				teardown(errRelayUndrained)
			case <-done:
			}
		}()
	}
	if lost := ws.lost(); lost != nil {
		// What was lost leaves a gap in the stream to the client: end
		// at once, and the client's session finds another proxy.
		go func() {
			select {
			case err := <-lost:
				teardown(fmt.Errorf("read from relay: %w", err))
			case <-done:
			}
		}()
	}
	stop := context.AfterFunc(ctx, func() { teardown(context.Cause(ctx)) })
	wg.Wait()
	stop()
	watch.stop()
	// When both writers failed, neither tore down: do it now, which also
	// records why the first side ended.
	teardown(nil)
	<-relayReaderEnded
	return cause
}
