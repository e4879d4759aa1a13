package messages

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/snowflake-go/snowflake/common/nat"
)

// ClientPollRequest is what a client sends to /client (and through AMP and
// SQS): the line "1.0", a LF, then a JSON object.
type ClientPollRequest struct {
	// Offer is the offer envelope (see [SessionDescription]), passed to the
	// proxy byte for byte.
	Offer string
	// NAT is the NAT type the client declares.
	NAT nat.Type
	// Fingerprint is the hex fingerprint of the bridge the client wants.
	// Decoding fills in [DefaultBridgeFingerprint] when it is absent.
	Fingerprint string
}

type clientPollRequestJSON struct {
	Offer       string `json:"offer"`
	NAT         string `json:"nat"`
	Fingerprint string `json:"fingerprint"`
}

// Encode returns the wire form "1.0\n{json}".
func (r *ClientPollRequest) Encode() ([]byte, error) {
	if r.Offer == "" {
		return nil, fmt.Errorf("messages: encode client poll request: empty offer")
	}
	natType := r.NAT
	if natType == "" {
		natType = nat.Unknown
	}
	if _, err := nat.Parse(string(natType)); err != nil {
		return nil, fmt.Errorf("messages: encode client poll request: %w", err)
	}
	fp := r.Fingerprint
	if fp == "" {
		fp = DefaultBridgeFingerprint
	}
	body, err := json.Marshal(clientPollRequestJSON{Offer: r.Offer, NAT: string(natType), Fingerprint: fp})
	if err != nil {
		return nil, fmt.Errorf("messages: encode client poll request: %w", err)
	}
	out := make([]byte, 0, len(ClientVersion)+1+len(body))
	out = append(out, ClientVersion...)
	out = append(out, '\n')
	return append(out, body...), nil
}

// IsLegacyClientPoll reports whether b is a pre-1.1 client poll, whose whole
// body is the offer envelope (it starts with '{'). Such polls carry the NAT
// type in the Snowflake-NAT-Type header and get legacy responses.
func IsLegacyClientPoll(b []byte) bool { return len(b) > 0 && b[0] == '{' }

// DecodeClientPollRequest parses the current client poll format. The
// returned error is a [*DecodeError] whose Reason is the exact string the
// broker answers with.
func DecodeClientPollRequest(b []byte) (*ClientPollRequest, error) {
	const msg = "client poll request"
	version, body, ok := bytes.Cut(b, []byte{'\n'})
	if !ok || string(version) != ClientVersion {
		return nil, decodeErr(msg, "version", ErrStrUnsupportedVersion, nil)
	}
	var j clientPollRequestJSON
	if err := json.Unmarshal(body, &j); err != nil {
		return nil, decodeErr(msg, "body", err.Error(), err)
	}
	if j.Offer == "" {
		return nil, decodeErr(msg, "offer", ErrStrNoOffer, nil)
	}
	natType, err := nat.Parse(j.NAT)
	if err != nil {
		return nil, decodeErr(msg, "nat", ErrStrInvalidNAT, err)
	}
	fp := j.Fingerprint
	if fp == "" {
		fp = DefaultBridgeFingerprint
	}
	if _, err := ParseFingerprint(fp); err != nil {
		return nil, decodeErr(msg, "fingerprint", ErrStrBadFingerprint, err)
	}
	return &ClientPollRequest{Offer: j.Offer, NAT: natType, Fingerprint: fp}, nil
}

// ParseFingerprint decodes a hex bridge fingerprint (case-insensitive) of 20
// bytes (RSA identity) or 32 bytes (ed25519 identity).
func ParseFingerprint(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("messages: fingerprint: %w", err)
	}
	if len(b) != 20 && len(b) != 32 {
		return nil, fmt.Errorf("messages: fingerprint: %d bytes, want 20 or 32", len(b))
	}
	return b, nil
}

// CanonicalFingerprint returns the upper-case hex form of a valid
// fingerprint, so that lookups do not depend on the sender's hex case.
func CanonicalFingerprint(s string) (string, error) {
	b, err := ParseFingerprint(s)
	if err != nil {
		return "", err
	}
	return strings.ToUpper(hex.EncodeToString(b)), nil
}

// ClientPollResponse is the broker's answer to a client poll: exactly one of
// Answer (the proxy's answer envelope) or Error is set.
type ClientPollResponse struct {
	Answer string `json:"answer,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Encode returns the JSON form, omitting empty keys.
func (r *ClientPollResponse) Encode() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("messages: encode client poll response: %w", err)
	}
	return b, nil
}

// DecodeClientPollResponse parses a client poll response. A response with
// neither an answer nor an error is an error, as deployed clients treat it.
func DecodeClientPollResponse(b []byte) (*ClientPollResponse, error) {
	const msg = "client poll response"
	var r ClientPollResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, decodeErr(msg, "body", err.Error(), err)
	}
	if r.Answer == "" && r.Error == "" {
		return nil, decodeErr(msg, "answer", "neither answer nor error", nil)
	}
	return &r, nil
}
