package proxy

import "github.com/coder/websocket"

// relayDialOptions: the browser makes the WebSocket itself.
func (c Config) relayDialOptions() *websocket.DialOptions { return nil }
