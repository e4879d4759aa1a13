//go:build !js

package proxy

import "github.com/coder/websocket"

// relayPacer holds back writes to the relay; natively a write blocks while
// the TCP connection is full, which is all the pacing needed.
type relayPacer struct{}

func newRelayPacer(*websocket.Conn) relayPacer { return relayPacer{} }

func (relayPacer) wait(<-chan struct{}) bool { return true }

// closeRelay drops the connection to the relay at once.
func closeRelay(ws *websocket.Conn) { ws.CloseNow() }

// awaitRelayReader waits for the relay reader, which closeRelay ended.
func awaitRelayReader(ended <-chan struct{}) { <-ended }

// endRelayCheck closes the reachability check's connection normally.
func endRelayCheck(ws *websocket.Conn) { ws.Close(websocket.StatusNormalClosure, "") }
