package messages

import (
	"errors"
	"fmt"
)

// DecodeError reports a message that could not be decoded: which message,
// which field, and the wire-visible reason (one of the ErrStr constants, or
// the JSON decoder's message for malformed JSON).
type DecodeError struct {
	// Message names the message type, e.g. "client poll request".
	Message string
	// Field is the JSON key (or "version", "body") that was bad.
	Field string
	// Reason is the text a broker sends back to the peer.
	Reason string
	// Err is the underlying error, if any (e.g. from encoding/json).
	Err error
}

func (e *DecodeError) Error() string {
	s := fmt.Sprintf("messages: decode %s: %s: %s", e.Message, e.Field, e.Reason)
	if e.Err != nil && e.Err.Error() != e.Reason {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Reason returns the peer-visible reason of err: the Reason of a
// [*DecodeError] found in its chain, or err's own text otherwise.
func Reason(err error) string {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Reason
	}
	return err.Error()
}

func decodeErr(msg, field, reason string, err error) error {
	return &DecodeError{Message: msg, Field: field, Reason: reason, Err: err}
}
