package fingerprint

import (
	"encoding/binary"
	"fmt"
)

// MaxMessageSize bounds a handshake message the reassemblers buffer. A
// hello with a post-quantum key share is under 2 KiB; 64 KiB leaves room
// for TLS 1.2 certificate chains while bounding what a hostile peer can
// make us hold.
const MaxMessageSize = 64 << 10

// maxRecordSize is the largest (D)TLS record fragment allowed
// (RFC 8446 §5.2: 2^14 plus expansion).
const maxRecordSize = 1<<14 + 2048

// maxPartial bounds how many DTLS messages may be incomplete at once.
const maxPartial = 16

// Record content types (RFC 8446 §5.1).
const (
	contentChangeCipherSpec uint8 = 20
	contentAlert            uint8 = 21
	contentHandshake        uint8 = 22
	contentApplicationData  uint8 = 23
	contentHeartbeat        uint8 = 24
)

// Message is one complete plaintext handshake message.
type Message struct {
	// Type is the handshake type ([TypeClientHello], ...).
	Type uint8
	// Seq is the DTLS message_seq (zero for TLS).
	Seq uint16
	// RecordVersion is the version field of the record that carried the
	// message's first byte.
	RecordVersion uint16
	// Body is the message without its handshake header.
	Body []byte
}

// StreamReassembler turns one direction of a TLS byte stream into
// handshake messages. It stops at the first ChangeCipherSpec or
// application-data record, after which the handshake is encrypted.
type StreamReassembler struct {
	buf     []byte     // bytes of an incomplete record
	hs      []byte     // handshake bytes not yet forming a whole message
	spans   []spanOfHS // which record version carried which bytes of hs
	stopped bool
	err     error
}

// spanOfHS says that the next n bytes of StreamReassembler.hs came in a
// record of the given version.
type spanOfHS struct {
	n       int
	version uint16
}

// Add consumes the next bytes of the stream and returns the handshake
// messages they complete. After an error every later call returns it.
func (s *StreamReassembler) Add(b []byte) ([]Message, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.stopped {
		return nil, nil
	}
	s.buf = append(s.buf, b...)
	var out []Message
	for !s.stopped && len(s.buf) >= 5 {
		typ := s.buf[0]
		version := binary.BigEndian.Uint16(s.buf[1:])
		n := int(binary.BigEndian.Uint16(s.buf[3:]))
		if typ < contentChangeCipherSpec || typ > contentHeartbeat {
			s.err = &ParseError{Msg: "TLS record", Field: "content_type", Err: fmt.Errorf("unknown type %d", typ)}
			return out, s.err
		}
		if n > maxRecordSize {
			s.err = &ParseError{Msg: "TLS record", Field: "length", Err: fmt.Errorf("%d exceeds %d", n, maxRecordSize)}
			return out, s.err
		}
		if len(s.buf) < 5+n {
			break
		}
		frag := s.buf[5 : 5+n]
		switch typ {
		case contentHandshake:
			if len(frag) > 0 {
				s.hs = append(s.hs, frag...)
				s.spans = append(s.spans, spanOfHS{n: len(frag), version: version})
			}
			msgs, err := s.splitMessages()
			out = append(out, msgs...)
			if err != nil {
				s.err = err
				return out, err
			}
		case contentChangeCipherSpec, contentApplicationData:
			s.stopped = true
		}
		s.buf = s.buf[5+n:]
	}
	if s.stopped {
		s.buf, s.hs, s.spans = nil, nil, nil
	}
	return out, nil
}

// splitMessages removes the complete messages at the front of s.hs.
func (s *StreamReassembler) splitMessages() ([]Message, error) {
	var out []Message
	for len(s.hs) >= 4 {
		n := int(s.hs[1])<<16 | int(s.hs[2])<<8 | int(s.hs[3])
		if n > MaxMessageSize {
			return out, &ParseError{Msg: "TLS handshake", Field: "length", Err: fmt.Errorf("%w: %d bytes", ErrTooLarge, n)}
		}
		if len(s.hs) < 4+n {
			break
		}
		body := make([]byte, n)
		copy(body, s.hs[4:4+n])
		out = append(out, Message{Type: s.hs[0], RecordVersion: s.spans[0].version, Body: body})
		s.hs = s.hs[4+n:]
		for used := 4 + n; used > 0; {
			if s.spans[0].n > used {
				s.spans[0].n -= used
				break
			}
			used -= s.spans[0].n
			s.spans = s.spans[1:]
		}
	}
	if len(s.hs) == 0 {
		s.hs = nil // let the backing array go
	}
	return out, nil
}

// DatagramReassembler turns one direction of DTLS datagrams into handshake
// messages, putting fragmented messages back together by message_seq and
// fragment_offset (Chromium's post-quantum ClientHello spans two
// datagrams). Retransmitted messages are returned once. Only epoch-0
// (plaintext) records are read; encrypted ones are skipped.
type DatagramReassembler struct {
	partial map[uint16]*partialMessage
	done    map[uint16]bool
}

type partialMessage struct {
	typ           uint8
	recordVersion uint16
	body          []byte
	have          []bool // which body bytes arrived
	missing       int
}

// Add consumes one UDP payload and returns the handshake messages it
// completes. A malformed datagram returns an error and leaves the state of
// earlier datagrams intact.
func (d *DatagramReassembler) Add(datagram []byte) ([]Message, error) {
	if d.partial == nil {
		d.partial = map[uint16]*partialMessage{}
		d.done = map[uint16]bool{}
	}
	var out []Message
	b := datagram
	for len(b) > 0 {
		if b[0]&0xe0 == 0x20 {
			// A DTLS 1.3 unified header: an encrypted record whose header
			// length depends on its flags. Nothing after it is plaintext.
			break
		}
		if len(b) < 13 {
			return out, &ParseError{Msg: "DTLS record", Field: "header", Err: ErrTruncated}
		}
		typ := b[0]
		version := binary.BigEndian.Uint16(b[1:])
		epoch := binary.BigEndian.Uint16(b[3:])
		n := int(binary.BigEndian.Uint16(b[11:]))
		// 20–31 keep the classic header: the known types plus DTLS 1.3's
		// ACK (26) and future ones, whose records are skipped below.
		if typ < contentChangeCipherSpec || typ > 31 {
			return out, &ParseError{Msg: "DTLS record", Field: "content_type", Err: fmt.Errorf("unknown type %d", typ)}
		}
		if len(b) < 13+n {
			return out, &ParseError{Msg: "DTLS record", Field: "length", Err: ErrTruncated}
		}
		frag := b[13 : 13+n]
		b = b[13+n:]
		if typ != contentHandshake || epoch != 0 {
			continue
		}
		msgs, err := d.addFragments(frag, version)
		out = append(out, msgs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// addFragments reads the handshake fragments of one record.
func (d *DatagramReassembler) addFragments(b []byte, recordVersion uint16) ([]Message, error) {
	var out []Message
	for len(b) > 0 {
		r := &reader{b: b, msg: "DTLS handshake"}
		typ, _ := r.u8("msg_type")
		length, _ := r.u24("length")
		seq, _ := r.u16("message_seq")
		off, _ := r.u24("fragment_offset")
		flen, err := r.u24("fragment_length")
		if err != nil {
			return out, err
		}
		data, err := r.take(flen, "fragment")
		if err != nil {
			return out, err
		}
		b = r.b
		if length > MaxMessageSize {
			return out, &ParseError{Msg: "DTLS handshake", Field: "length", Err: fmt.Errorf("%w: %d bytes", ErrTooLarge, length)}
		}
		if off+flen > length {
			return out, &ParseError{Msg: "DTLS handshake", Field: "fragment_offset", Err: fmt.Errorf("fragment %d+%d beyond length %d", off, flen, length)}
		}
		if d.done[seq] {
			continue // a retransmission
		}
		p := d.partial[seq]
		if p == nil {
			if len(d.partial) >= maxPartial {
				return out, &ParseError{Msg: "DTLS handshake", Field: "message_seq", Err: fmt.Errorf("more than %d incomplete messages", maxPartial)}
			}
			p = &partialMessage{typ: typ, body: make([]byte, length), have: make([]bool, length), missing: length}
			d.partial[seq] = p
		} else if p.typ != typ || len(p.body) != length {
			return out, &ParseError{Msg: "DTLS handshake", Field: "fragment", Err: fmt.Errorf("message_seq %d: type or length differs between fragments", seq)}
		}
		if off == 0 {
			p.recordVersion = recordVersion
		}
		copy(p.body[off:], data)
		for i := off; i < off+flen; i++ {
			if !p.have[i] {
				p.have[i] = true
				p.missing--
			}
		}
		if p.missing == 0 {
			out = append(out, Message{Type: p.typ, Seq: seq, RecordVersion: p.recordVersion, Body: p.body})
			delete(d.partial, seq)
			d.done[seq] = true
		}
	}
	return out, nil
}
