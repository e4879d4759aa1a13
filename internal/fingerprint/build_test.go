package fingerprint

import (
	"encoding/binary"
)

// Encoders for tests: they build hellos and records field by field, so
// that parser tests and fuzz round trips do not depend on captured bytes.

func put16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }

func put24(b []byte, v int) []byte { return append(b, byte(v>>16), byte(v>>8), byte(v)) }

func vec8(b, v []byte) []byte { return append(append(b, byte(len(v))), v...) }

func vec16(b, v []byte) []byte { return append(put16(b, uint16(len(v))), v...) }

func list16(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = put16(b, v)
	}
	return b
}

func encodeExtensions(exts []Extension) []byte {
	var block []byte
	for _, e := range exts {
		block = put16(block, e.Type)
		block = vec16(block, e.Data)
	}
	return vec16(nil, block)
}

// marshalClientHello encodes c's wire fields (not the decoded views).
func marshalClientHello(c *ClientHello) []byte {
	b := put16(nil, c.LegacyVersion)
	b = append(b, c.Random[:]...)
	b = vec8(b, c.SessionID)
	if c.DTLS {
		b = vec8(b, c.Cookie)
	}
	b = vec16(b, list16(c.CipherSuites...))
	b = vec8(b, c.CompressionMethods)
	if c.Extensions != nil {
		b = append(b, encodeExtensions(c.Extensions)...)
	}
	return b
}

func marshalServerHello(s *ServerHello) []byte {
	b := put16(nil, s.LegacyVersion)
	b = append(b, s.Random[:]...)
	b = vec8(b, s.SessionID)
	b = put16(b, s.CipherSuite)
	b = append(b, s.Compression)
	if s.Extensions != nil {
		b = append(b, encodeExtensions(s.Extensions)...)
	}
	return b
}

// Extension payload builders.

func extSNI(name string) Extension {
	entry := vec16([]byte{0}, []byte(name))
	return Extension{Type: ExtServerName, Data: vec16(nil, entry)}
}

func extALPN(protos ...string) Extension {
	var l []byte
	for _, p := range protos {
		l = vec8(l, []byte(p))
	}
	return Extension{Type: ExtALPN, Data: vec16(nil, l)}
}

func extList16(typ uint16, vs ...uint16) Extension {
	return Extension{Type: typ, Data: vec16(nil, list16(vs...))}
}

func extVersions(vs ...uint16) Extension {
	return Extension{Type: ExtSupportedVersions, Data: vec8(nil, list16(vs...))}
}

func extKeyShares(shares ...KeyShare) Extension {
	var l []byte
	for _, k := range shares {
		l = put16(l, k.Group)
		l = vec16(l, make([]byte, k.KeyLen))
	}
	return Extension{Type: ExtKeyShare, Data: vec16(nil, l)}
}

func ext(typ uint16, data ...byte) Extension { return Extension{Type: typ, Data: data} }

// handshake wraps a body in a TLS handshake header.
func handshake(typ uint8, body []byte) []byte {
	return append(put24([]byte{typ}, len(body)), body...)
}

// tlsRecord wraps a fragment in a TLS record header.
func tlsRecord(typ uint8, version uint16, frag []byte) []byte {
	return vec16(put16([]byte{typ}, version), frag)
}

// dtlsFragment is one DTLS handshake fragment.
func dtlsFragment(typ uint8, seq uint16, body []byte, off, n int) []byte {
	b := put24([]byte{typ}, len(body))
	b = put16(b, seq)
	b = put24(b, off)
	b = put24(b, n)
	return append(b, body[off:off+n]...)
}

// dtlsRecord wraps a fragment in a DTLS record header (epoch, sequence).
func dtlsRecord(typ uint8, version, epoch uint16, seq uint64, frag []byte) []byte {
	b := put16([]byte{typ}, version)
	b = put16(b, epoch)
	b = append(b, byte(seq>>40), byte(seq>>32), byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq))
	return vec16(b, frag)
}
