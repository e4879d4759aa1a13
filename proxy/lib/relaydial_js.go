//go:build js

package proxy

import "github.com/coder/websocket"

// relayDialOptions returns nil: in the browser the WebSocket is the
// browser's, with its own buffering.
func relayDialOptions() *websocket.DialOptions { return nil }
