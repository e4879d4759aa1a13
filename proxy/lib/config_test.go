//go:build !js

package proxy

import "testing"

// A default relay that can never be dialled (no ws/wss scheme, no host)
// must be refused at start, not found out at every client.
func TestConfigValidateRelayURL(t *testing.T) {
	for _, tc := range []struct {
		relay string
		ok    bool
	}{
		{"", true}, // the default
		{"wss://snowflake.torproject.net/", true},
		{"ws://127.0.0.1:8080/", true},
		{"https://snowflake.torproject.net/", false},
		{"snowflake.torproject.net", false},
		{"wss:///path", false},
		{"wss://[::1/", false},
	} {
		err := (&Config{RelayURL: tc.relay}).Validate()
		if (err == nil) != tc.ok {
			t.Errorf("RelayURL %q: Validate() = %v, want ok %v", tc.relay, err, tc.ok)
		}
	}
}
