//go:build !js

package proxy

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/snowflake-go/snowflake/common/rawsock"
)

// relayDialer opens WebSockets to relays with coder/websocket.
type relayDialer struct {
	opts *websocket.DialOptions
}

// relayDialer makes the relay WebSockets over sockets that make their
// system calls directly (package rawsock): every message a client sends or
// receives passes through one, and the usual system-call path costs the
// proxy a futex call and a runtime thread wake-up per message.
func (c Config) relayDialer() relayDialer {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return rawsock.Wrap(conn), nil
	}
	return relayDialer{opts: &websocket.DialOptions{HTTPClient: &http.Client{Transport: t}}}
}

func (d relayDialer) dial(ctx context.Context, url string) (relayConn, error) {
	ws, _, err := websocket.Dial(ctx, url, d.opts)
	if err != nil {
		return nil, err
	}
	return newWSConn(ws), nil
}
