// Package fingerprint decodes TLS and DTLS handshake hellos as a censor's
// classifier sees them and reduces them to comparable fingerprints (JA4,
// JA4S, JA3 and a ServerHello summary).
//
// It exists so that tests and the fingerprint command can show, from
// packets captured on the wire, whether our handshakes look like a
// browser's: the decoders take untrusted bytes, keep every field a
// fingerprint may depend on (order included) and never trust a length.
//
// Flow: captured payloads ([Packet], from [Capture] or a pcap file) are
// grouped by direction; a [StreamReassembler] (TLS over TCP) or
// [DatagramReassembler] (DTLS over UDP, with fragmented hellos put back
// together) yields handshake [Message]s; [ParseClientHello],
// [ParseServerHello] and [ParseHelloVerifyRequest] decode them. [Extract]
// does all of that for a packet list.
package fingerprint

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Handshake message types (RFC 8446 §4, RFC 6347 §4.3.2).
const (
	TypeClientHello        uint8 = 1
	TypeServerHello        uint8 = 2
	TypeHelloVerifyRequest uint8 = 3
)

// Extension code points the decoders look into.
const (
	ExtServerName          uint16 = 0x0000
	ExtSupportedGroups     uint16 = 0x000a
	ExtECPointFormats      uint16 = 0x000b
	ExtSignatureAlgorithms uint16 = 0x000d
	ExtALPN                uint16 = 0x0010
	ExtSupportedVersions   uint16 = 0x002b
	ExtKeyShare            uint16 = 0x0033
)

// Protocol versions as they appear on the wire.
const (
	VersionTLS10  uint16 = 0x0301
	VersionTLS11  uint16 = 0x0302
	VersionTLS12  uint16 = 0x0303
	VersionTLS13  uint16 = 0x0304
	VersionDTLS10 uint16 = 0xfeff
	VersionDTLS12 uint16 = 0xfefd
	VersionDTLS13 uint16 = 0xfefc
)

// helloRetryRandom is the fixed Random that marks a ServerHello as a
// HelloRetryRequest (RFC 8446 §4.1.3).
var helloRetryRandom = [32]byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// IsGREASE reports whether v is one of the RFC 8701 reserved values
// (0x0a0a, 0x1a1a, ..., 0xfafa) that browsers sprinkle into hellos and
// fingerprints ignore.
func IsGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

// Extension is one hello extension, in wire order.
type Extension struct {
	Type uint16
	Data []byte
}

// KeyShare is one key_share entry: the group and the size of its key.
type KeyShare struct {
	Group  uint16
	KeyLen int
}

// ClientHello is a decoded (D)TLS ClientHello.
type ClientHello struct {
	// DTLS is set for a DTLS hello (it carries a cookie field).
	DTLS bool
	// RecordVersion is the version of the record that carried the hello's
	// first byte; zero when the hello was decoded without its record.
	RecordVersion uint16
	// Length is the size of the hello's body in bytes (without record
	// and handshake headers); length-based rules look at it.
	Length int
	// LegacyVersion is the hello's client_version field.
	LegacyVersion uint16
	Random        [32]byte
	SessionID     []byte
	// Cookie is the DTLS cookie (empty on a first hello).
	Cookie             []byte
	CipherSuites       []uint16
	CompressionMethods []byte
	// Extensions in wire order, GREASE included.
	Extensions []Extension

	// Decoded from the extensions (wire order, GREASE included).
	ServerName          string
	HasServerName       bool
	ALPN                []string
	SupportedVersions   []uint16
	SignatureAlgorithms []uint16
	SupportedGroups     []uint16
	ECPointFormats      []byte
	KeyShares           []KeyShare
}

// ServerHello is a decoded (D)TLS ServerHello or HelloRetryRequest.
type ServerHello struct {
	DTLS          bool
	RecordVersion uint16
	LegacyVersion uint16
	Random        [32]byte
	SessionID     []byte
	CipherSuite   uint16
	Compression   uint8
	Extensions    []Extension
	// SelectedVersion is supported_versions' value when present, else
	// LegacyVersion.
	SelectedVersion uint16
	// ALPN is the selected application protocol, if any.
	ALPN string
	// KeyShareGroup is the group of the server's key_share, if any.
	KeyShareGroup uint16
	// HelloRetryRequest is set when Random is the RFC 8446 retry marker.
	HelloRetryRequest bool
}

// HelloVerifyRequest is a DTLS server's stateless cookie exchange
// (RFC 6347 §4.2.1); browsers never send one.
type HelloVerifyRequest struct {
	RecordVersion uint16
	ServerVersion uint16
	Cookie        []byte
}

// reader decodes big-endian fields from b, naming the message for errors.
type reader struct {
	b   []byte
	msg string
	// ext is 1 + the extension type being decoded, or 0; it prefixes
	// field names in errors, built only when an error happens because
	// formatting them up front would dominate the decoding cost.
	ext int
}

func (r *reader) fail(field string, err error) error {
	if r.ext != 0 {
		field = fmt.Sprintf("extension 0x%04x %s", r.ext-1, field)
	}
	return &ParseError{Msg: r.msg, Field: field, Err: err}
}

func (r *reader) take(n int, field string) ([]byte, error) {
	if n < 0 || len(r.b) < n {
		return nil, r.fail(field, ErrTruncated)
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) u8(field string) (uint8, error) {
	b, err := r.take(1, field)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *reader) u16(field string) (uint16, error) {
	b, err := r.take(2, field)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(b), nil
}

func (r *reader) u24(field string) (int, error) {
	b, err := r.take(3, field)
	if err != nil {
		return 0, err
	}
	return int(b[0])<<16 | int(b[1])<<8 | int(b[2]), nil
}

func (r *reader) vec8(field string) ([]byte, error) {
	n, err := r.u8(field)
	if err != nil {
		return nil, err
	}
	return r.take(int(n), field)
}

func (r *reader) vec16(field string) ([]byte, error) {
	n, err := r.u16(field)
	if err != nil {
		return nil, err
	}
	return r.take(int(n), field)
}

// u16s decodes a list of 16-bit values whose byte length is b's.
func u16s(b []byte, msg, field string) ([]uint16, error) {
	r := &reader{msg: msg}
	return r.u16sNamed(b, field)
}

// u16s decodes b as a list of 16-bit values of the extension r decodes.
// whole8 and whole16 read a vector that must be all that is left of the
// extension body.
func (r *reader) whole8(field string) ([]byte, error) {
	b, err := r.vec8(field)
	if err != nil {
		return nil, err
	}
	return b, r.done(field)
}

func (r *reader) whole16(field string) ([]byte, error) {
	b, err := r.vec16(field)
	if err != nil {
		return nil, err
	}
	return b, r.done(field)
}

func (r *reader) u16s(b []byte) ([]uint16, error) { return r.u16sNamed(b, "data") }

func (r *reader) u16sNamed(b []byte, field string) ([]uint16, error) {
	if len(b)%2 != 0 {
		return nil, r.fail(field, fmt.Errorf("odd length %d", len(b)))
	}
	v := make([]uint16, len(b)/2)
	for i := range v {
		v[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return v, nil
}

// done reports trailing bytes after the last field as an error.
func (r *reader) done(field string) error {
	if len(r.b) != 0 {
		return r.fail(field, fmt.Errorf("%d trailing bytes", len(r.b)))
	}
	return nil
}

// parseExtensions decodes the optional extensions block at the end of a
// hello.
func parseExtensions(r *reader) ([]Extension, error) {
	if len(r.b) == 0 {
		return nil, nil // hellos without extensions end after compression
	}
	block, err := r.vec16("extensions")
	if err != nil {
		return nil, err
	}
	if err := r.done("extensions"); err != nil {
		return nil, err
	}
	er := &reader{b: block, msg: r.msg}
	// Non-nil even when empty: an empty block is on the wire and differs
	// from none.
	exts := []Extension{}
	for len(er.b) > 0 {
		typ, err := er.u16("extension type")
		if err != nil {
			return nil, err
		}
		er.ext = int(typ) + 1
		data, err := er.vec16("length")
		if err != nil {
			return nil, err
		}
		er.ext = 0
		exts = append(exts, Extension{Type: typ, Data: data})
	}
	return exts, nil
}

// ParseClientHello decodes the body of a ClientHello handshake message
// (without its 4-byte TLS or 12-byte DTLS handshake header).
func ParseClientHello(body []byte, dtls bool) (*ClientHello, error) {
	r := &reader{b: body, msg: "ClientHello"}
	c := &ClientHello{DTLS: dtls, Length: len(body)}
	var err error
	if c.LegacyVersion, err = r.u16("client_version"); err != nil {
		return nil, err
	}
	rnd, err := r.take(32, "random")
	if err != nil {
		return nil, err
	}
	copy(c.Random[:], rnd)
	if c.SessionID, err = r.vec8("session_id"); err != nil {
		return nil, err
	}
	if len(c.SessionID) > 32 {
		return nil, r.fail("session_id", fmt.Errorf("length %d exceeds 32", len(c.SessionID)))
	}
	if dtls {
		if c.Cookie, err = r.vec8("cookie"); err != nil {
			return nil, err
		}
	}
	suites, err := r.vec16("cipher_suites")
	if err != nil {
		return nil, err
	}
	if c.CipherSuites, err = u16s(suites, r.msg, "cipher_suites"); err != nil {
		return nil, err
	}
	if c.CompressionMethods, err = r.vec8("compression_methods"); err != nil {
		return nil, err
	}
	if c.Extensions, err = parseExtensions(r); err != nil {
		return nil, err
	}
	for _, e := range c.Extensions {
		if err := c.decodeExtension(e); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *ClientHello) decodeExtension(e Extension) error {
	const msg, field = "ClientHello", "data"
	ext := int(e.Type) + 1
	r := &reader{b: e.Data, msg: msg, ext: ext}
	var err error
	switch e.Type {
	case ExtServerName:
		c.HasServerName = true
		if len(e.Data) == 0 {
			return nil // a server's empty acknowledgement; tolerated here too
		}
		list, err := r.whole16(field)
		if err != nil {
			return err
		}
		lr := &reader{b: list, msg: msg, ext: ext}
		for len(lr.b) > 0 {
			typ, err := lr.u8(field)
			if err != nil {
				return err
			}
			name, err := lr.vec16(field)
			if err != nil {
				return err
			}
			if typ == 0 && c.ServerName == "" {
				c.ServerName = string(name)
			}
		}
	case ExtALPN:
		list, err := r.whole16(field)
		if err != nil {
			return err
		}
		lr := &reader{b: list, msg: msg, ext: ext}
		for len(lr.b) > 0 {
			p, err := lr.vec8(field)
			if err != nil {
				return err
			}
			c.ALPN = append(c.ALPN, string(p))
		}
	case ExtSupportedVersions:
		list, err := r.whole8(field)
		if err != nil {
			return err
		}
		c.SupportedVersions, err = r.u16s(list)
		return err
	case ExtSignatureAlgorithms:
		list, err := r.whole16(field)
		if err != nil {
			return err
		}
		c.SignatureAlgorithms, err = r.u16s(list)
		return err
	case ExtSupportedGroups:
		list, err := r.whole16(field)
		if err != nil {
			return err
		}
		c.SupportedGroups, err = r.u16s(list)
		return err
	case ExtECPointFormats:
		if c.ECPointFormats, err = r.vec8(field); err != nil {
			return err
		}
		return r.done(field)
	case ExtKeyShare:
		list, err := r.whole16(field)
		if err != nil {
			return err
		}
		lr := &reader{b: list, msg: msg, ext: ext}
		for len(lr.b) > 0 {
			g, err := lr.u16(field)
			if err != nil {
				return err
			}
			key, err := lr.vec16(field)
			if err != nil {
				return err
			}
			c.KeyShares = append(c.KeyShares, KeyShare{Group: g, KeyLen: len(key)})
		}
	}
	return nil
}

// ParseServerHello decodes the body of a ServerHello handshake message.
func ParseServerHello(body []byte, dtls bool) (*ServerHello, error) {
	r := &reader{b: body, msg: "ServerHello"}
	s := &ServerHello{DTLS: dtls}
	var err error
	if s.LegacyVersion, err = r.u16("server_version"); err != nil {
		return nil, err
	}
	rnd, err := r.take(32, "random")
	if err != nil {
		return nil, err
	}
	copy(s.Random[:], rnd)
	s.HelloRetryRequest = bytes.Equal(rnd, helloRetryRandom[:])
	if s.SessionID, err = r.vec8("session_id"); err != nil {
		return nil, err
	}
	if len(s.SessionID) > 32 {
		return nil, r.fail("session_id", fmt.Errorf("length %d exceeds 32", len(s.SessionID)))
	}
	if s.CipherSuite, err = r.u16("cipher_suite"); err != nil {
		return nil, err
	}
	if s.Compression, err = r.u8("compression_method"); err != nil {
		return nil, err
	}
	if s.Extensions, err = parseExtensions(r); err != nil {
		return nil, err
	}
	s.SelectedVersion = s.LegacyVersion
	const field = "data"
	for _, e := range s.Extensions {
		er := &reader{b: e.Data, msg: r.msg, ext: int(e.Type) + 1}
		switch e.Type {
		case ExtSupportedVersions:
			if s.SelectedVersion, err = er.u16(field); err != nil {
				return nil, err
			}
			if err := er.done(field); err != nil {
				return nil, err
			}
		case ExtALPN:
			list, err := er.vec16(field)
			if err != nil {
				return nil, err
			}
			if err := er.done(field); err != nil {
				return nil, err
			}
			lr := &reader{b: list, msg: r.msg, ext: er.ext}
			p, err := lr.vec8(field)
			if err != nil {
				return nil, err
			}
			if err := lr.done(field); err != nil {
				return nil, err
			}
			s.ALPN = string(p)
		case ExtKeyShare:
			// A retry request names only the group; a real share has a key.
			if s.KeyShareGroup, err = er.u16(field); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// ParseHelloVerifyRequest decodes the body of a DTLS HelloVerifyRequest.
func ParseHelloVerifyRequest(body []byte) (*HelloVerifyRequest, error) {
	r := &reader{b: body, msg: "HelloVerifyRequest"}
	h := &HelloVerifyRequest{}
	var err error
	if h.ServerVersion, err = r.u16("server_version"); err != nil {
		return nil, err
	}
	if h.Cookie, err = r.vec8("cookie"); err != nil {
		return nil, err
	}
	if err := r.done("cookie"); err != nil {
		return nil, err
	}
	return h, nil
}
