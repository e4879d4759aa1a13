package relaypattern

import (
	"errors"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"snowflake.torproject.net$", "snowflake.torproject.net", true},
		{"snowflake.torproject.net$", "a.snowflake.torproject.net", true},
		{"snowflake.torproject.net$", "badsnowflake.torproject.net", true}, // no label boundary
		{"snowflake.torproject.net$", "snowflake.torproject.net.evil", false},
		{"snowflake.torproject.net", "x.snowflake.torproject.net", true}, // '$' optional
		{"^snowflake.torproject.net$", "snowflake.torproject.net", true},
		{"^snowflake.torproject.net$", "a.snowflake.torproject.net", false},
		{"^snowflake.torproject.net", "snowflake.torproject.net", true},
		{"127.0.0.1$", "127.0.0.1", true},
		{"127.0.0.1$", "10.127.0.0.1", true},
		{"", "anything", true},
		{"$", "anything", true},
		{"^$", "", true},
		{"^$", "x", false},
		{"Example.com$", "example.com", false}, // byte-wise
		{"net$$", "x.net", false},              // only one '$' stripped
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.host); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.host, got, tt.want)
		}
	}
}

func TestIsSubset(t *testing.T) {
	tests := []struct {
		proxy, broker string
		want          bool
	}{
		{"snowflake.torproject.net$", "snowflake.torproject.net$", true},
		{"torproject.net$", "snowflake.torproject.net$", true},
		{"snowflake.torproject.net$", "torproject.net$", false},
		{"snowflake.torproject.net$", "", false}, // empty broker pattern refuses
		{"", "", true},
		{"", "snowflake.torproject.net$", true},
		{"$", "x$", true},
		{"snowflake.torproject.net$", "^snowflake.torproject.net$", true},
		{"snowflake.torproject.net$", "^a.snowflake.torproject.net$", true},
		{"^snowflake.torproject.net$", "^snowflake.torproject.net$", true},
		{"^snowflake.torproject.net$", "snowflake.torproject.net$", false},
		{"^snowflake.torproject.net$", "^a.snowflake.torproject.net$", false},
		{"127.0.0.1$", "127.0.0.1$", true},
		{"0.0.1$", "127.0.0.1$", true},
	}
	for _, tt := range tests {
		if got := IsSubset(tt.proxy, tt.broker); got != tt.want {
			t.Errorf("IsSubset(proxy %q, broker %q) = %v, want %v", tt.proxy, tt.broker, got, tt.want)
		}
	}
}

// TestIsSubsetImpliesMatch checks the acceptance rule against its meaning:
// whenever the broker accepts a proxy, every host the broker's pattern
// allows is also allowed by the proxy's.
func TestIsSubsetImpliesMatch(t *testing.T) {
	patterns := []string{"", "$", "^$", "net$", "t.net$", "x.t.net$", "^x.t.net$", "^t.net$", "^net", "a$"}
	hosts := []string{"", "net", "t.net", "x.t.net", "yx.t.net", "a", "ba", "x.net"}
	for _, p := range patterns {
		for _, b := range patterns {
			if !IsSubset(p, b) {
				continue
			}
			for _, h := range hosts {
				if Match(b, h) && !Match(p, h) {
					t.Errorf("IsSubset(%q, %q) but host %q matches broker only", p, b, h)
				}
			}
		}
	}
}

func TestValidate(t *testing.T) {
	for p, ok := range map[string]bool{"snowflake.torproject.net$": true, "^x$": true, "$": true,
		"snowflake.torproject.net": false, "": false, "x$ ": false} {
		err := Validate(p)
		if (err == nil) != ok {
			t.Errorf("Validate(%q) = %v", p, err)
		}
		if err != nil && !errors.Is(err, ErrNoDollar) {
			t.Errorf("Validate(%q) = %v, want ErrNoDollar", p, err)
		}
	}
}
