package testenv

import (
	"testing"

	"github.com/snowflake-go/snowflake/internal/stunserver"
)

// STUN starts a STUN server on 127.0.0.1, with 127.0.0.2 as its alternate
// address (RFC 5780 NAT discovery needs both), and closes it when the test
// ends.
func STUN(t testing.TB) *stunserver.Server {
	t.Helper()
	s, err := stunserver.Listen("127.0.0.1", "127.0.0.2")
	if err != nil {
		t.Fatalf("stun server: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
