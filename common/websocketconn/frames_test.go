//go:build !js

package websocketconn

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// rawServer accepts one WebSocket on loopback, completes the opening
// handshake by hand, and hands the raw TCP connection to serve, so that a
// test can send frames exactly as a misbehaving or slow server would. It
// returns a Conn dialed to it.
func rawServer(t *testing.T, serve func(net.Conn)) *Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		req, err := http.ReadRequest(bufio.NewReader(nc))
		if err != nil {
			t.Errorf("read upgrade request: %v", err)
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"
		if _, err := nc.Write([]byte(resp)); err != nil {
			return
		}
		serve(nc)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := NewWithAddrs(ws, Addr{}, Addr{})
	t.Cleanup(func() { c.Close() })
	return c
}

// Opcodes of RFC 6455 §5.2.
const (
	opContinuation = 0x0
	opBinary       = 0x2
)

// frame returns an unmasked server frame.
func frame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// splitMessage serves "hello" as one binary message in two frames, the
// second sent after gap.
func splitMessage(gap time.Duration) func(net.Conn) {
	return func(nc net.Conn) {
		nc.Write(frame(false, opBinary, []byte("hel")))
		time.Sleep(gap)
		nc.Write(frame(true, opContinuation, []byte("lo")))
		io.Copy(io.Discard, nc)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestReadDeadlineExtendedMidMessage: a deadline moved later while a
// message is half read governs the rest of that message, as it does for
// any net.Conn. The server's idle check moves the deadline before every
// read; the rest of a message was read under the deadline in force when
// the message began, so a message arriving slowly but steadily was cut off
// as idle.
func TestReadDeadlineExtendedMidMessage(t *testing.T) {
	c := rawServer(t, splitMessage(400*time.Millisecond))
	buf := make([]byte, 10)
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hel" {
		t.Fatalf("first Read = %q, %v", buf[:n], err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "lo" {
		t.Fatalf("second Read = %q, %v; want \"lo\" under the extended deadline", buf[:n], err)
	}
}

// TestReadDeadlineSetMidMessage: a deadline set while a message is half
// read bounds the wait for the rest of it.
func TestReadDeadlineSetMidMessage(t *testing.T) {
	c := rawServer(t, splitMessage(3*time.Second))
	buf := make([]byte, 10)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hel" {
		t.Fatalf("first Read = %q, %v", buf[:n], err)
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	start := time.Now()
	n, err := c.Read(buf)
	if !isTimeout(err) {
		t.Fatalf("second Read = %q, %v after %v; want a timeout", buf[:n], err, time.Since(start))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("deadline took %v", d)
	}
}

// TestReadDeadlinePendingRead: a deadline set while a Read is blocked
// applies to that Read (the net.Conn contract).
func TestReadDeadlinePendingRead(t *testing.T) {
	c := rawServer(t, splitMessage(3*time.Second))
	buf := make([]byte, 10)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hel" {
		t.Fatalf("first Read = %q, %v", buf[:n], err)
	}
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.Read(buf)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if err := <-errc; !isTimeout(err) {
		t.Fatalf("blocked Read = %v after %v; want a timeout", err, time.Since(start))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("deadline took %v", d)
	}
}

// TestReadPastDeadline: a Read whose deadline has already passed returns a
// timeout at once and leaves the connection usable, so a caller may wake a
// reader with a past deadline and carry on.
func TestReadPastDeadline(t *testing.T) {
	c := rawServer(t, splitMessage(0))
	buf := make([]byte, 10)
	c.SetReadDeadline(time.Unix(1, 0))
	if _, err := c.Read(buf); !isTimeout(err) {
		t.Fatalf("Read past deadline = %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	got, err := io.ReadAll(io.LimitReader(c, 5))
	if err != nil || string(got) != "hello" {
		t.Fatalf("Read after clearing the deadline = %q, %v", got, err)
	}
}
