package proxy

import "context"

// relayDialer opens the browser's WebSockets to relays.
type relayDialer struct{}

func (c Config) relayDialer() relayDialer { return relayDialer{} }

func (relayDialer) dial(ctx context.Context, url string) (relayConn, error) {
	return dialWebSocket(ctx, url)
}
