//go:build !js

package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/snowflake-go/snowflake/common/scrub"
)

// A failed relay dial is logged as the reason a client was not served. The
// dial error quotes the URL requested, client_ip included, where an IPv6
// address is percent-encoded ("2001%3Adb8%3A%3A1"); the log must still
// lose the address unless unsafe logging is on.
func TestRelayDialErrorScrubbed(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := "ws" + gone.URL[len("http"):] + "/?x=1"
	gone.Close() // nothing listens there now
	relayU, err := parseRelay(goneURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"2a00:1450:4001:80b::200e", "198.51.100.7"} {
		t.Run(addr, func(t *testing.T) {
			_, err := dialRelay(context.Background(), relayU, netip.MustParseAddr(addr), relayDialer{})
			if err == nil {
				t.Fatal("dial to a closed port succeeded")
			}
			forms := []string{addr, url.QueryEscape(addr)}
			for _, unsafe := range []bool{false, true} {
				var buf bytes.Buffer
				log := slog.New(scrub.NewHandler(slog.NewTextHandler(&buf, nil), unsafe))
				log.Warn("client not served", "err", err)
				found := false
				for _, f := range forms {
					found = found || strings.Contains(buf.String(), f)
				}
				if found != unsafe {
					t.Errorf("unsafe logging %v, address in the log %v: %s", unsafe, found, buf.String())
				}
			}
		})
	}
}
