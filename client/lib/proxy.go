package client

import (
	"log/slog"

	"github.com/snowflake-go/snowflake/common/socksnet"
)

// NewProxied is [New] for a client behind an upstream SOCKS5 proxy (tor's
// TOR_PT_PROXY): every connection the Transport makes goes through p. The
// rendezvous (HTTP, AMP or SQS) uses CONNECT, with host names resolved by
// the proxy; WebRTC and NAT discovery use UDP associations, and the only
// host candidate ICE can gather is the proxy's relay, so the offer names
// no address of this machine. cfg.DialBroker is replaced.
func NewProxied(cfg Config, logger *slog.Logger, p *socksnet.Net) (*Transport, error) {
	cfg.DialBroker = p.DialContext
	return newTransport(cfg, logger, p)
}
