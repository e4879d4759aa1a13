package client

import (
	"context"
	"net"

	"github.com/snowflake-go/snowflake/common/rendezvous"
)

func dialTo(addr string) rendezvous.DialFunc {
	var d net.Dialer
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}
