package fingerprint

import (
	"errors"
	"fmt"
)

// ErrTruncated reports a message that ends before a length field says it
// should.
var ErrTruncated = errors.New("truncated")

// ErrTooLarge reports a handshake message longer than [MaxMessageSize]; a
// hello is never that long, so it is refused instead of buffered.
var ErrTooLarge = errors.New("message too large")

// ErrNotHello reports a handshake message of another type than the one
// asked for.
var ErrNotHello = errors.New("not a hello")

// ParseError names the field of a hello or record that could not be decoded.
type ParseError struct {
	// Msg is what was being decoded ("ClientHello", "DTLS record", ...).
	Msg string
	// Field is the field that was bad ("cipher_suites", "extension 0x002b", ...).
	Field string
	// Err is the underlying reason, often [ErrTruncated].
	Err error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("fingerprint: %s: %s: %v", e.Msg, e.Field, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }
