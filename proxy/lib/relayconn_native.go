//go:build !js

package proxy

import (
	"context"
	"io"

	"github.com/coder/websocket"
)

// wsConn is a relayConn over coder/websocket.
type wsConn struct {
	ws *websocket.Conn
	r  io.Reader // the message being read; nil between messages
}

// newWSConn returns ws as a relayConn, with messages from the relay
// limited to wsReadLimit.
func newWSConn(ws *websocket.Conn) *wsConn {
	ws.SetReadLimit(wsReadLimit)
	return &wsConn{ws: ws}
}

func (c *wsConn) read(ctx context.Context, p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.ws.Reader(ctx)
			if websocket.CloseStatus(err) != -1 {
				return 0, io.EOF
			}
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) write(ctx context.Context, p []byte) error {
	return c.ws.Write(ctx, websocket.MessageBinary, p)
}

// waitWritable returns at once: a write blocks while the TCP connection is
// full, which is all the pacing needed.
func (c *wsConn) waitWritable(<-chan struct{}) bool { return true }

// abort drops the connection at once.
func (c *wsConn) abort() { c.ws.CloseNow() }

// lost returns nil: reads block while the proxy is not reading, so
// nothing is lost.
func (c *wsConn) lost() <-chan error { return nil }

// close closes the connection normally, waiting for the relay's answer.
func (c *wsConn) close() { c.ws.Close(websocket.StatusNormalClosure, "") }
