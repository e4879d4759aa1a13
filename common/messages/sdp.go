package messages

import (
	"encoding/json"
	"fmt"
)

// SDP types of the session-description envelope.
const (
	SDPTypeOffer    = "offer"
	SDPTypePranswer = "pranswer"
	SDPTypeAnswer   = "answer"
	SDPTypeRollback = "rollback"
)

// SessionDescription is the envelope in which an SDP offer or answer travels
// through the broker: a JSON object {"type":..,"sdp":..} that is itself
// carried as a string inside the outer message.
type SessionDescription struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// Encode returns the envelope text.
func (d SessionDescription) Encode() (string, error) {
	if !validSDPType(d.Type) {
		return "", fmt.Errorf("messages: encode session description: invalid type %q", d.Type)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("messages: encode session description: %w", err)
	}
	return string(b), nil
}

func validSDPType(t string) bool {
	switch t {
	case SDPTypeOffer, SDPTypePranswer, SDPTypeAnswer, SDPTypeRollback:
		return true
	}
	return false
}

// DecodeSessionDescription parses an envelope. Both keys are required and
// the type must be one of the four WebRTC SDP types.
func DecodeSessionDescription(s string) (SessionDescription, error) {
	const msg = "session description"
	var j struct {
		Type *string `json:"type"`
		SDP  *string `json:"sdp"`
	}
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return SessionDescription{}, decodeErr(msg, "body", err.Error(), err)
	}
	if j.Type == nil {
		return SessionDescription{}, decodeErr(msg, "type", "missing type", nil)
	}
	if j.SDP == nil {
		return SessionDescription{}, decodeErr(msg, "sdp", "missing sdp", nil)
	}
	if !validSDPType(*j.Type) {
		return SessionDescription{}, decodeErr(msg, "type", "invalid type", nil)
	}
	return SessionDescription{Type: *j.Type, SDP: *j.SDP}, nil
}
