// Package turbotunnel keeps one client session alive across many short-lived
// transports (proxies). It defines the stream preamble (magic token and
// ClientID), the packet conns that sit between KCP and the transports (a
// server-side conn with one queue per ClientID, and a client-side conn that
// redials when its transport dies), and the one KCP and smux configuration
// shared by client and server.
//
// Flow on the server: a transport reads the preamble, then feeds each
// received packet to [QueuePacketConn.QueueIncoming] tagged with the ClientID;
// KCP reads them with ReadFrom, so the ClientID is KCP's remote address. KCP's
// WriteTo puts packets on the ClientID's outgoing queue, which whatever
// transport currently carries that ClientID drains ([QueuePacketConn.Attach]).
package turbotunnel

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Token is the magic prefix of every transport stream from a client. It
// tells a turbotunnel client from older one-shot clients, which the server
// no longer supports.
var Token = [8]byte{0x12, 0x93, 0x60, 0x5d, 0x27, 0x81, 0x75, 0xf5}

// PreambleLength is the size of Token plus a ClientID.
const PreambleLength = len(Token) + len(ClientID{})

// ClientID names one client session. The client picks it at random once per
// session and sends it at the start of every transport stream, so the server
// can join the streams into one KCP session. It is the net.Addr of the
// session on the server side.
type ClientID [8]byte

// NewClientID returns a random ClientID.
func NewClientID() ClientID {
	var id ClientID
	rand.Read(id[:]) // never fails (crypto/rand panics the process itself if the OS source breaks)
	return id
}

// Network implements net.Addr.
func (id ClientID) Network() string { return "clientid" }

// String implements net.Addr: 16 lowercase hex digits.
func (id ClientID) String() string { return hex.EncodeToString(id[:]) }

// ParseClientID parses the textual form made by [ClientID.String].
func ParseClientID(s string) (ClientID, error) {
	var id ClientID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("turbotunnel: client id %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("turbotunnel: client id %q: %w", s, err)
	}
	return id, nil
}

// ErrBadToken is returned by [ReadPreamble] when a stream does not start with
// [Token].
var ErrBadToken = errors.New("turbotunnel: stream does not start with the token")

// ErrShortClientID is returned by [ReadPreamble] when a stream ends inside
// the ClientID.
var ErrShortClientID = errors.New("turbotunnel: stream ended inside the client id")

// ErrShortToken is returned by [ReadPreamble] when a stream ends inside the
// token.
var ErrShortToken = errors.New("turbotunnel: stream ended inside the token")

// AppendPreamble appends Token and id to b.
func AppendPreamble(b []byte, id ClientID) []byte {
	b = append(b, Token[:]...)
	return append(b, id[:]...)
}

// ReadPreamble reads Token and a ClientID from the start of a stream. It
// returns io.EOF if the stream ends before its first byte, which is how
// proxies test that a server is reachable, and ErrBadToken, ErrShortToken or
// ErrShortClientID (wrapped) for anything else that is not a preamble. Other
// read errors are returned wrapped.
func ReadPreamble(r io.Reader) (ClientID, error) {
	var buf [PreambleLength]byte
	n, err := io.ReadFull(r, buf[:len(Token)])
	switch {
	case err == io.EOF:
		return ClientID{}, io.EOF
	case err == io.ErrUnexpectedEOF:
		return ClientID{}, fmt.Errorf("%w after %d bytes", ErrShortToken, n)
	case err != nil:
		return ClientID{}, fmt.Errorf("turbotunnel: read token: %w", err)
	}
	if [8]byte(buf[:len(Token)]) != Token {
		return ClientID{}, ErrBadToken
	}
	n, err = io.ReadFull(r, buf[len(Token):])
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return ClientID{}, fmt.Errorf("%w after %d bytes", ErrShortClientID, n)
	case err != nil:
		return ClientID{}, fmt.Errorf("turbotunnel: read client id: %w", err)
	}
	return ClientID(buf[len(Token):]), nil
}
