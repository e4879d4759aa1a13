// Package extorport speaks tor's Extended ORPort protocol (tor's
// ext-orport-spec): the SAFE_COOKIE authentication and the metadata commands
// a pluggable-transport server sends before relaying a client's bytes.
//
// Both ends are here. [Dial] is the transport server's side (used by
// snowflake-server); [Accept] is tor's side, so that tests and benchmarks can
// stand in for tor with the real handshake.
//
// Handshake, after the TCP connection:
//
//	tor:    auth types, one byte each, ended by 0x00 (SAFE_COOKIE = 0x01)
//	client: 0x01, then ClientNonce (32 bytes)
//	tor:    ServerHash (32), ServerNonce (32)
//	client: ClientHash (32)
//	tor:    0x01 success / 0x00 failure
//
// ServerHash = HMAC-SHA256(cookie, "ExtORPort authentication server-to-client
// hash" | ClientNonce | ServerNonce), ClientHash likewise with
// "client-to-server". Then commands, each [u16 command][u16 length][body]
// big-endian: USERADDR 0x0001, TRANSPORT 0x0002, DONE 0x0000 from the client;
// OKAY 0x1000 or DENY 0x1001 from tor. After OKAY the connection carries the
// OR protocol.
package extorport

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Command codes.
const (
	CmdDone      uint16 = 0x0000
	CmdUserAddr  uint16 = 0x0001
	CmdTransport uint16 = 0x0002
	CmdOkay      uint16 = 0x1000
	CmdDeny      uint16 = 0x1001
)

// AuthSafeCookie is the only authentication type defined.
const AuthSafeCookie = 0x01

const (
	nonceLength  = 32
	hashLength   = 32
	cookieLength = 32
	// cookieHeader starts the auth cookie file written by tor.
	cookieHeader = "! Extended ORPort Auth Cookie !\x0a"
	// maxAuthTypes bounds the auth-type list a peer may send.
	maxAuthTypes = 255
	// MaxBodyLength bounds a command body we accept; real bodies are an
	// address or a transport name.
	MaxBodyLength = 1024
	// maxCommands bounds the metadata commands before DONE.
	maxCommands = 64

	serverHashLabel = "ExtORPort authentication server-to-client hash"
	clientHashLabel = "ExtORPort authentication client-to-server hash"
)

// Errors.
var (
	// ErrNoSafeCookie: the peer does not offer SAFE_COOKIE authentication.
	ErrNoSafeCookie = errors.New("extorport: SAFE_COOKIE authentication not offered")
	// ErrServerHash: tor's hash does not match our cookie (wrong cookie file).
	ErrServerHash = errors.New("extorport: server hash mismatch")
	// ErrAuthFailed: tor rejected our client hash.
	ErrAuthFailed = errors.New("extorport: authentication rejected")
	// ErrDenied: tor answered the metadata with DENY.
	ErrDenied = errors.New("extorport: connection denied")
	// ErrClientHash: (tor's side) the client's hash does not match.
	ErrClientHash = errors.New("extorport: client hash mismatch")
)

// ReadCookieFile reads an auth cookie file written by tor.
func ReadCookieFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("extorport: read cookie: %w", err)
	}
	return ParseCookie(b)
}

// ParseCookie extracts the 32-byte cookie from the contents of a cookie file.
func ParseCookie(b []byte) ([]byte, error) {
	if len(b) != len(cookieHeader)+cookieLength {
		return nil, fmt.Errorf("extorport: cookie file is %d bytes, want %d", len(b), len(cookieHeader)+cookieLength)
	}
	if string(b[:len(cookieHeader)]) != cookieHeader {
		return nil, errors.New("extorport: cookie file header is wrong")
	}
	return bytes.Clone(b[len(cookieHeader):]), nil
}

// FormatCookie returns the contents of a cookie file holding cookie, as tor
// writes it.
func FormatCookie(cookie []byte) []byte {
	return append([]byte(cookieHeader), cookie...)
}

func authHash(label string, cookie, clientNonce, serverNonce []byte) []byte {
	h := hmac.New(sha256.New, cookie)
	io.WriteString(h, label)
	h.Write(clientNonce)
	h.Write(serverNonce)
	return h.Sum(nil)
}

// WriteCommand writes one command.
func WriteCommand(w io.Writer, cmd uint16, body []byte) error {
	if len(body) > 0xffff {
		return fmt.Errorf("extorport: command body of %d bytes", len(body))
	}
	buf := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint16(buf[0:], cmd)
	binary.BigEndian.PutUint16(buf[2:], uint16(len(body)))
	buf = append(buf, body...)
	_, err := w.Write(buf)
	return err
}

// ReadCommand reads one command; bodies over MaxBodyLength are refused.
func ReadCommand(r io.Reader) (cmd uint16, body []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("extorport: read command header: %w", err)
	}
	cmd = binary.BigEndian.Uint16(hdr[0:])
	n := int(binary.BigEndian.Uint16(hdr[2:]))
	if n > MaxBodyLength {
		return cmd, nil, fmt.Errorf("extorport: command %#04x body of %d bytes exceeds %d", cmd, n, MaxBodyLength)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return cmd, nil, fmt.Errorf("extorport: read command %#04x body: %w", cmd, err)
	}
	return cmd, body, nil
}

// Handshake authenticates to tor over rw with cookie and sends the client's
// address (skipped when empty) and the transport name. It returns nil once
// tor has answered OKAY; the caller then relays OR bytes over rw. Callers
// bound the time it may take with a deadline on the connection.
func Handshake(rw io.ReadWriter, cookie []byte, userAddr, transport string) error {
	if err := authenticate(rw, cookie); err != nil {
		return err
	}
	var buf bytes.Buffer
	if userAddr != "" {
		WriteCommand(&buf, CmdUserAddr, []byte(userAddr))
	}
	WriteCommand(&buf, CmdTransport, []byte(transport))
	WriteCommand(&buf, CmdDone, nil)
	if _, err := rw.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("extorport: send metadata: %w", err)
	}
	cmd, _, err := ReadCommand(rw)
	if err != nil {
		return err
	}
	switch cmd {
	case CmdOkay:
		return nil
	case CmdDeny:
		return ErrDenied
	default:
		return fmt.Errorf("extorport: unexpected reply command %#04x", cmd)
	}
}

func authenticate(rw io.ReadWriter, cookie []byte) error {
	offered := false
	var b [1]byte
	for i := 0; ; i++ {
		if i > maxAuthTypes {
			return errors.New("extorport: auth type list too long")
		}
		if _, err := io.ReadFull(rw, b[:]); err != nil {
			return fmt.Errorf("extorport: read auth types: %w", err)
		}
		if b[0] == 0 {
			break
		}
		if b[0] == AuthSafeCookie {
			offered = true
		}
	}
	if !offered {
		return ErrNoSafeCookie
	}
	clientNonce := make([]byte, nonceLength)
	rand.Read(clientNonce)
	if _, err := rw.Write(append([]byte{AuthSafeCookie}, clientNonce...)); err != nil {
		return fmt.Errorf("extorport: send nonce: %w", err)
	}
	reply := make([]byte, hashLength+nonceLength)
	if _, err := io.ReadFull(rw, reply); err != nil {
		return fmt.Errorf("extorport: read server hash: %w", err)
	}
	serverHash, serverNonce := reply[:hashLength], reply[hashLength:]
	if !hmac.Equal(serverHash, authHash(serverHashLabel, cookie, clientNonce, serverNonce)) {
		return ErrServerHash
	}
	if _, err := rw.Write(authHash(clientHashLabel, cookie, clientNonce, serverNonce)); err != nil {
		return fmt.Errorf("extorport: send client hash: %w", err)
	}
	if _, err := io.ReadFull(rw, b[:]); err != nil {
		return fmt.Errorf("extorport: read auth result: %w", err)
	}
	if b[0] != 1 {
		return ErrAuthFailed
	}
	return nil
}

// Metadata is what a transport server told tor about a connection.
type Metadata struct {
	UserAddr  string // empty if not sent
	Transport string // empty if not sent
}

// Accept runs tor's side of the handshake over rw: it offers SAFE_COOKIE,
// checks the client's hash against cookie, reads metadata until DONE and
// answers OKAY. Unknown commands are ignored, as tor does.
func Accept(rw io.ReadWriter, cookie []byte) (*Metadata, error) {
	if _, err := rw.Write([]byte{AuthSafeCookie, 0}); err != nil {
		return nil, fmt.Errorf("extorport: send auth types: %w", err)
	}
	req := make([]byte, 1+nonceLength)
	if _, err := io.ReadFull(rw, req); err != nil {
		return nil, fmt.Errorf("extorport: read auth request: %w", err)
	}
	if req[0] != AuthSafeCookie {
		return nil, fmt.Errorf("extorport: client chose auth type %#02x", req[0])
	}
	clientNonce := req[1:]
	serverNonce := make([]byte, nonceLength)
	rand.Read(serverNonce)
	msg := append(authHash(serverHashLabel, cookie, clientNonce, serverNonce), serverNonce...)
	if _, err := rw.Write(msg); err != nil {
		return nil, fmt.Errorf("extorport: send server hash: %w", err)
	}
	clientHash := make([]byte, hashLength)
	if _, err := io.ReadFull(rw, clientHash); err != nil {
		return nil, fmt.Errorf("extorport: read client hash: %w", err)
	}
	if !hmac.Equal(clientHash, authHash(clientHashLabel, cookie, clientNonce, serverNonce)) {
		rw.Write([]byte{0})
		return nil, ErrClientHash
	}
	if _, err := rw.Write([]byte{1}); err != nil {
		return nil, fmt.Errorf("extorport: send auth result: %w", err)
	}
	md := &Metadata{}
	for i := 0; ; i++ {
		if i >= maxCommands {
			return nil, errors.New("extorport: too many metadata commands")
		}
		cmd, body, err := ReadCommand(rw)
		if err != nil {
			return nil, err
		}
		switch cmd {
		case CmdUserAddr:
			md.UserAddr = string(body)
		case CmdTransport:
			md.Transport = string(body)
		case CmdDone:
			if err := WriteCommand(rw, CmdOkay, nil); err != nil {
				return nil, fmt.Errorf("extorport: send okay: %w", err)
			}
			return md, nil
		}
	}
}
