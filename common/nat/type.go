// Package nat names the NAT types that Snowflake clients and proxies declare
// to the broker, and discovers a host's NAT type (RFC 5780 over STUN).
package nat

import "fmt"

// Type is a NAT type as it appears on the wire (lower case).
type Type string

// The NAT types of the wire protocol. A restricted NAT has address-dependent
// mapping or filtering, so two restricted peers cannot reach each other.
const (
	Unknown      Type = "unknown"
	Restricted   Type = "restricted"
	Unrestricted Type = "unrestricted"
)

// Parse returns the Type named by s. The empty string means [Unknown], as
// deployed peers omit the field when they have not probed.
func Parse(s string) (Type, error) {
	switch t := Type(s); t {
	case "":
		return Unknown, nil
	case Unknown, Restricted, Unrestricted:
		return t, nil
	default:
		return "", fmt.Errorf("nat: invalid NAT type %q", s)
	}
}

func (t Type) String() string { return string(t) }
