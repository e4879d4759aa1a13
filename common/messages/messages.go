// Package messages encodes and decodes the messages exchanged with the
// Snowflake broker (wire-protocol §2): the client poll and its response, the
// proxy poll and its response, the proxy answer and its response, and the
// session-description envelope that carries an SDP offer or answer.
//
// Encoders emit exactly the key casing deployed peers send (lower-case keys
// for client messages, capitalised Go field names for proxy messages).
// Decoders accept keys case-insensitively and ignore unknown keys, like the
// upstream Go peers do, and report which field was bad through [*DecodeError].
// The package does no I/O: callers cap request bodies at [MaxBodySize].
package messages

// Versions of the two message families.
const (
	// ClientVersion is the first line of a client poll request. The broker
	// compares it for exact equality.
	ClientVersion = "1.0"
	// ProxyVersion is the Version field sent in proxy polls and answers.
	// Any version whose major part is "1" is accepted.
	ProxyVersion = "1.3"
	// proxyMajorVersion is the text before the first '.' that a proxy
	// message's Version must have.
	proxyMajorVersion = "1"
)

// MaxBodySize is the most bytes of a request or response body that broker,
// client and proxy read.
const MaxBodySize = 100000

// MaxSidLength is the longest proxy poll Sid, in bytes, that the broker
// accepts. The broker keeps the Sid of every waiting proxy and of every
// match, so without a bound a poll could pin a whole body's worth of memory
// for its hold. Deployed proxies send 22 bytes (16 random bytes in unpadded
// base64); 256 leaves room for any plausible longer random id (a 128-byte
// id in hex, say) while keeping a held poll's Sid small.
const MaxSidLength = 256

// DefaultBridgeFingerprint is the fingerprint assumed when a client poll does
// not name a bridge, and the fingerprint of the broker's built-in bridge.
const DefaultBridgeFingerprint = "2B280B23E1107BB62ABFC40DDCC8824814F80A72"

// Status strings of proxy poll responses and answer responses.
const (
	StatusClientMatch           = "client match"
	StatusNoMatch               = "no match"
	StatusIncorrectRelayPattern = "incorrect relay pattern"
	StatusSuccess               = "success"
	StatusClientGone            = "client gone"
)

// Error strings carried in the "error" key of client poll responses. Deployed
// clients show them to users and some tests match them, so they are exact.
const (
	ErrStrNoProxies          = "no snowflake proxies currently available"
	ErrStrTimedOut           = "timed out waiting for answer!"
	ErrStrUnsupportedVersion = "unsupported message version"
	ErrStrNoOffer            = "no supplied offer"
	ErrStrInvalidNAT         = "invalid NAT type"
	ErrStrBadFingerprint     = "cannot decode fingerprint"
	ErrStrUnknownBridge      = "bridge with requested fingerprint is unknown to the broker"
	ErrStrBadURLPath         = "cannot decode URL path"
	// Proxy-side decode reasons (answered with HTTP 400 by the broker).
	ErrStrUnknownProxyVersion = "using unknown version"
	ErrStrNoSid               = "no supplied session id"
	ErrStrSidTooLong          = "session id too long"
	ErrStrNoAnswer            = "no supplied answer"
	ErrStrNoStatus            = "received invalid data"
)
