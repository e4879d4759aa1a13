// Package proxy is the Snowflake volunteer proxy: it long-polls the broker
// for client offers, answers them with WebRTC, and copies bytes between the
// client's data channel and a WebSocket to the bridge the broker names
// (wire-protocol §4).
//
// The same package runs natively (the snowflake-proxy binary) and in
// browsers (GOOS=js GOARCH=wasm). Native-only WebRTC settings live in files
// built with !js; everything else is shared.
//
// Flow of one client:
//
//	poller ──poll──▶ broker ──offer──▶ answerer (pion) ──answer──▶ broker
//	data channel opens ──▶ relay: dial WebSocket (client_ip from offer)
//	data channel ⇄ coalescing pumps ⇄ WebSocket, until either side ends
//	or nothing arrives from the relay for the idle timeout
//
// A capacity token is held from the poll that found the client until its
// connection ends, so the Clients count the broker sees and the number of
// concurrent clients both stay within Config.Capacity.
package proxy
