package server

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/encapsulation"
	"github.com/snowflake-go/snowflake/common/turbotunnel"
)

// FuzzTransport feeds arbitrary bytes to the server as the content of one
// WebSocket: whatever arrives, carry must end when the stream ends, without
// a panic, and the server must still close cleanly.
func FuzzTransport(f *testing.F) {
	id := turbotunnel.ClientID{1, 2, 3, 4, 5, 6, 7, 8}
	valid := turbotunnel.AppendPreamble(nil, id)
	var framed bytes.Buffer
	framed.Write(valid)
	encapsulation.WriteData(&framed, make([]byte, 24))
	encapsulation.WritePadding(&framed, 10)
	encapsulation.WriteData(&framed, make([]byte, 3000))
	f.Add([]byte{})
	f.Add(valid)
	f.Add(framed.Bytes())
	f.Add(append(bytes.Clone(valid), 0xc0, 0x80, 0x80, 0x01))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))

	srv, err := New(Config{
		DialOR:          func(context.Context, string) (net.Conn, error) { return nil, net.ErrClosed },
		NumTurbotunnel:  2,
		PreambleTimeout: time.Second,
		IdleTimeout:     time.Second,
	})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		go func() {
			b.Write(in)
			b.Close()
		}()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.carry(a, "")
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("carry did not return after the stream ended")
		}
	})
}
