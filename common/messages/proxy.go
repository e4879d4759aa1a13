package messages

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/snowflake-go/snowflake/common/nat"
)

// Proxy types that the broker counts separately. Any other Type is accepted
// and counted as [ProxyTypeUnknown].
const (
	ProxyTypeStandalone = "standalone"
	ProxyTypeWebext     = "webext"
	ProxyTypeBadge      = "badge"
	ProxyTypeIPTProxy   = "iptproxy"
	ProxyTypeUnknown    = "unknown"
)

// KnownProxyTypes lists the proxy types counted by name, in display order.
var KnownProxyTypes = [...]string{ProxyTypeStandalone, ProxyTypeWebext, ProxyTypeBadge, ProxyTypeIPTProxy}

// NormalizeProxyType maps a declared type to itself if known, else to
// [ProxyTypeUnknown].
func NormalizeProxyType(t string) string {
	for _, k := range KnownProxyTypes {
		if t == k {
			return t
		}
	}
	return ProxyTypeUnknown
}

// ProxyPollRequest is a proxy's long poll to /proxy.
type ProxyPollRequest struct {
	// Sid identifies this poll; the proxy repeats it in its answer.
	Sid string
	// Version is the proxy message version; Encode uses [ProxyVersion]
	// when empty.
	Version string
	// Type is the proxy implementation, e.g. "standalone".
	Type string
	// NAT is the proxy's NAT type.
	NAT nat.Type
	// Clients is the proxy's client count, rounded down to a multiple of 8.
	Clients int
	// AcceptedRelayPattern is the relay host-name pattern the proxy accepts
	// (see package relaypattern).
	AcceptedRelayPattern string
	// NoRelayPattern is true when the AcceptedRelayPattern key is absent
	// (proxies older than 2.3). Decode sets it; Encode then omits the key.
	// Current brokers refuse such polls.
	NoRelayPattern bool
}

type proxyPollRequestJSON struct {
	Sid                  string
	Version              string
	Type                 string
	NAT                  string
	Clients              int
	AcceptedRelayPattern *string `json:",omitempty"`
}

// Encode returns the JSON form with capitalised keys.
func (r *ProxyPollRequest) Encode() ([]byte, error) {
	if r.Sid == "" {
		return nil, fmt.Errorf("messages: encode proxy poll request: empty Sid")
	}
	natType := r.NAT
	if natType == "" {
		natType = nat.Unknown
	}
	j := proxyPollRequestJSON{Sid: r.Sid, Version: r.Version, Type: r.Type, NAT: string(natType), Clients: r.Clients}
	if j.Version == "" {
		j.Version = ProxyVersion
	}
	if !r.NoRelayPattern {
		p := r.AcceptedRelayPattern
		j.AcceptedRelayPattern = &p
	}
	b, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("messages: encode proxy poll request: %w", err)
	}
	return b, nil
}

// checkProxyVersion accepts any version whose major part is "1".
func checkProxyVersion(v string) bool {
	major, _, _ := strings.Cut(v, ".")
	return major == proxyMajorVersion
}

// DecodeProxyPollRequest parses a proxy poll. Type is kept as sent (use
// [NormalizeProxyType] for accounting); negative Clients become 0; a Sid
// longer than [MaxSidLength] is refused.
func DecodeProxyPollRequest(b []byte) (*ProxyPollRequest, error) {
	const msg = "proxy poll request"
	var j proxyPollRequestJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, decodeErr(msg, "body", err.Error(), err)
	}
	if !checkProxyVersion(j.Version) {
		return nil, decodeErr(msg, "Version", ErrStrUnknownProxyVersion, nil)
	}
	if j.Sid == "" {
		return nil, decodeErr(msg, "Sid", ErrStrNoSid, nil)
	}
	if len(j.Sid) > MaxSidLength {
		return nil, decodeErr(msg, "Sid", ErrStrSidTooLong, nil)
	}
	natType, err := nat.Parse(j.NAT)
	if err != nil {
		return nil, decodeErr(msg, "NAT", ErrStrInvalidNAT, err)
	}
	r := &ProxyPollRequest{Sid: j.Sid, Version: j.Version, Type: j.Type, NAT: natType, Clients: max(j.Clients, 0)}
	if j.AcceptedRelayPattern == nil {
		r.NoRelayPattern = true
	} else {
		r.AcceptedRelayPattern = *j.AcceptedRelayPattern
	}
	return r, nil
}

// ProxyPollResponse is the broker's reply to a proxy poll.
type ProxyPollResponse struct {
	// Status is StatusClientMatch, StatusNoMatch or
	// StatusIncorrectRelayPattern.
	Status string
	// Offer is the client's offer envelope (client match only).
	Offer string
	// NAT is the NAT type the client declared (client match only).
	NAT nat.Type
	// NextPoll is the advised delay before the next poll, in milliseconds.
	NextPoll int64
	// RelayURL is the WebSocket URL of the bridge the client asked for.
	RelayURL string
}

type proxyPollResponseJSON struct {
	Status   string
	Offer    string
	NAT      string
	NextPoll int64
	RelayURL string
}

// Encode returns the JSON form; every key is emitted.
func (r *ProxyPollResponse) Encode() ([]byte, error) {
	if r.Status == "" {
		return nil, fmt.Errorf("messages: encode proxy poll response: empty Status")
	}
	b, err := json.Marshal(proxyPollResponseJSON{Status: r.Status, Offer: r.Offer, NAT: string(r.NAT),
		NextPoll: r.NextPoll, RelayURL: r.RelayURL})
	if err != nil {
		return nil, fmt.Errorf("messages: encode proxy poll response: %w", err)
	}
	return b, nil
}

// DecodeProxyPollResponse parses a proxy poll response. A client match must
// carry an offer; for other statuses Offer is cleared. A missing NAT means
// unknown. The caller decides what to do with unexpected statuses.
func DecodeProxyPollResponse(b []byte) (*ProxyPollResponse, error) {
	const msg = "proxy poll response"
	var j proxyPollResponseJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, decodeErr(msg, "body", err.Error(), err)
	}
	if j.Status == "" {
		return nil, decodeErr(msg, "Status", ErrStrNoStatus, nil)
	}
	r := &ProxyPollResponse{Status: j.Status, NextPoll: j.NextPoll, RelayURL: j.RelayURL}
	if j.Status == StatusClientMatch {
		if j.Offer == "" {
			return nil, decodeErr(msg, "Offer", ErrStrNoOffer, nil)
		}
		r.Offer = j.Offer
	}
	natType, err := nat.Parse(j.NAT)
	if err != nil {
		return nil, decodeErr(msg, "NAT", ErrStrInvalidNAT, err)
	}
	r.NAT = natType
	return r, nil
}

// AnswerRequest is a proxy's POST to /answer.
type AnswerRequest struct {
	// Version is the proxy message version; Encode uses [ProxyVersion]
	// when empty.
	Version string
	// Sid is the Sid of the poll that returned the offer.
	Sid string
	// Answer is the proxy's answer envelope.
	Answer string
}

type answerRequestJSON struct {
	Version string
	Sid     string
	Answer  string
}

// Encode returns the JSON form with capitalised keys.
func (r *AnswerRequest) Encode() ([]byte, error) {
	if r.Sid == "" || r.Answer == "" {
		return nil, fmt.Errorf("messages: encode answer request: empty Sid or Answer")
	}
	j := answerRequestJSON(*r)
	if j.Version == "" {
		j.Version = ProxyVersion
	}
	b, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("messages: encode answer request: %w", err)
	}
	return b, nil
}

// DecodeAnswerRequest parses an answer. It does not check the answer for
// ICE candidates; that is broker policy.
func DecodeAnswerRequest(b []byte) (*AnswerRequest, error) {
	const msg = "answer request"
	var j answerRequestJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, decodeErr(msg, "body", err.Error(), err)
	}
	if !checkProxyVersion(j.Version) {
		return nil, decodeErr(msg, "Version", ErrStrUnknownProxyVersion, nil)
	}
	if j.Sid == "" {
		return nil, decodeErr(msg, "Sid", ErrStrNoSid, nil)
	}
	if j.Answer == "" {
		return nil, decodeErr(msg, "Answer", ErrStrNoAnswer, nil)
	}
	r := AnswerRequest(j)
	return &r, nil
}

// AnswerResponse is the broker's reply to an answer: StatusSuccess or
// StatusClientGone.
type AnswerResponse struct {
	Status string
}

// Encode returns the JSON form {"Status":"..."}.
func (r *AnswerResponse) Encode() ([]byte, error) {
	if r.Status == "" {
		return nil, fmt.Errorf("messages: encode answer response: empty Status")
	}
	b, err := json.Marshal(struct{ Status string }{r.Status})
	if err != nil {
		return nil, fmt.Errorf("messages: encode answer response: %w", err)
	}
	return b, nil
}

// DecodeAnswerResponse parses an answer response.
func DecodeAnswerResponse(b []byte) (*AnswerResponse, error) {
	const msg = "answer response"
	var j struct{ Status string }
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, decodeErr(msg, "body", err.Error(), err)
	}
	if j.Status == "" {
		return nil, decodeErr(msg, "Status", ErrStrNoStatus, nil)
	}
	return &AnswerResponse{Status: j.Status}, nil
}
