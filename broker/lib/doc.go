// Package broker is the Snowflake rendezvous broker (wire-protocol §2): it
// holds volunteer proxies' long polls, matches each client offer to one
// waiting proxy, and returns the proxy's answer to the client.
//
// Clients reach it over plain HTTP(S) (usually domain-fronted), through the
// AMP cache (GET /amp/client/..., armored HTML responses), or through Amazon
// SQS. The engine is [Broker]: build it with [New], serve [Broker.Handler]
// (or let [Broker.Run] serve it), and call [Broker.Close] when done.
//
// Matching: waiting proxies sit in two pools keyed by their NAT type
// (unrestricted; restricted and unknown). Each pool is a min-heap on the
// proxy's client count, so the least-loaded proxy is matched first. Clients
// are never queued: a client poll either takes a proxy at once or is told
// that none is available.
//
// Privacy: client and proxy IP addresses are used only to count countries
// and distinct addresses per statistics interval; they are kept only as
// keyed hashes whose key is discarded at the end of each interval, and they
// are never logged unless the operator asks for unsafe logging (the logger
// passed in is expected to scrub addresses, see package scrub).
package broker
