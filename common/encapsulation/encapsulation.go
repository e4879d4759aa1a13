// Package encapsulation frames packets inside a byte stream, the layer that
// carries KCP packets over a WebRTC data channel and a WebSocket, both of which
// Snowflake treats as plain byte streams.
//
// A stream is a sequence of chunks. Each chunk is a 1-, 2- or 3-byte length
// prefix followed by that many bytes. The first prefix byte is
//
//	d c x x x x x x
//
// where d=1 marks a data chunk (one packet) and d=0 a padding chunk (to be
// skipped), c=1 says another prefix byte follows, and the x bits are the most
// significant bits of the length. Each continuation byte is
//
//	c y y y y y y y
//
// with its own continuation bit and 7 more length bits. The third prefix byte
// must have c=0, so lengths are at most 20 bits (0xFFFFF). The valid forms:
//
//	00xxxxxx                    padding, 6-bit length
//	10xxxxxx                    data, 6-bit length
//	01xxxxxx 0yyyyyyy           padding, 13-bit length
//	11xxxxxx 0yyyyyyy           data, 13-bit length
//	01xxxxxx 1yyyyyyy 0zzzzzzz  padding, 20-bit length
//	11xxxxxx 1yyyyyyy 0zzzzzzz  data, 20-bit length
//
// Writers use the shortest prefix; readers accept longer (non-minimal) ones
// too, because the format allows them.
//
// The package does no I/O policy of its own: no buffering beyond what a call
// needs, no logging, no timeouts.
package encapsulation

import (
	"errors"
	"fmt"
	"io"
)

// MaxLength is the largest length a prefix can express.
const MaxLength = 1<<20 - 1

// MaxPrefixLength is the size of the longest length prefix.
const MaxPrefixLength = 3

// ErrPrefixTooLong is returned when a length prefix has a continuation bit
// set in its third byte.
var ErrPrefixTooLong = errors.New("encapsulation: length prefix longer than 3 bytes")

// ErrTooLong reports a data chunk longer than the buffer given to [ReadData].
// The whole chunk has been consumed from the stream, so the caller may go on
// reading the next chunk; the first Max bytes were copied into the buffer.
type ErrTooLong struct {
	Length int // length announced by the chunk's prefix
	Max    int // size of the caller's buffer
}

func (e *ErrTooLong) Error() string {
	return fmt.Sprintf("encapsulation: data chunk of %d bytes exceeds buffer of %d", e.Length, e.Max)
}

// ErrTooLongToWrite is returned when asked to write a chunk longer than
// [MaxLength].
var ErrTooLongToWrite = fmt.Errorf("encapsulation: chunk longer than %d bytes", MaxLength)

// AppendPrefix appends the shortest prefix for a chunk of length n (data when
// data is true, padding otherwise) to b. n must be in [0, MaxLength].
func AppendPrefix(b []byte, n int, data bool) []byte {
	var d byte
	if data {
		d = 0x80
	}
	switch {
	case n < 1<<6:
		return append(b, d|byte(n))
	case n < 1<<13:
		return append(b, d|0x40|byte(n>>7), byte(n&0x7f))
	default:
		return append(b, d|0x40|byte(n>>14&0x3f), 0x80|byte(n>>7&0x7f), byte(n&0x7f))
	}
}

// PrefixLength returns the size of the shortest prefix for a chunk of length n.
func PrefixLength(n int) int {
	switch {
	case n < 1<<6:
		return 1
	case n < 1<<13:
		return 2
	default:
		return 3
	}
}

// AppendData appends one data chunk holding p to b.
func AppendData(b, p []byte) ([]byte, error) {
	if len(p) > MaxLength {
		return b, ErrTooLongToWrite
	}
	return append(AppendPrefix(b, len(p), true), p...), nil
}

// WriteData writes p as one data chunk, with a single Write call on w so that
// message-oriented writers (a data channel, a WebSocket) get the chunk whole.
// It returns len(p) on success.
func WriteData(w io.Writer, p []byte) (int, error) {
	if len(p) > MaxLength {
		return 0, ErrTooLongToWrite
	}
	buf := make([]byte, 0, MaxPrefixLength+len(p))
	buf, _ = AppendData(buf, p)
	if _, err := w.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WritePadding writes padding chunks totalling exactly n bytes, prefixes
// included. n must be at least 1 (there is no zero-byte chunk).
func WritePadding(w io.Writer, n int) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("encapsulation: padding of %d bytes", n)
	}
	var buf []byte
	for rest := n; rest > 0; {
		// Pick the largest body whose prefix plus body fits the rest.
		body := min(rest-1, MaxLength)
		for PrefixLength(body)+body > rest {
			body--
		}
		buf = AppendPrefix(buf, body, false)
		buf = append(buf, make([]byte, body)...)
		rest -= PrefixLength(body) + body
	}
	if _, err := w.Write(buf); err != nil {
		return 0, err
	}
	return n, nil
}

// readByte reads one byte, through io.ByteReader when r has it (a
// bufio.Reader makes prefix parsing cheap).
func readByte(r io.Reader) (byte, error) {
	if br, ok := r.(io.ByteReader); ok {
		return br.ReadByte()
	}
	var b [1]byte
	_, err := io.ReadFull(r, b[:])
	return b[0], err
}

// ReadPrefix reads one length prefix and reports the chunk's length and
// whether it is data. io.EOF means the stream ended cleanly between chunks;
// io.ErrUnexpectedEOF that it ended inside a prefix.
func ReadPrefix(r io.Reader) (n int, data bool, err error) {
	b, err := readByte(r)
	if err != nil {
		return 0, false, err // io.EOF here is a clean end
	}
	data = b&0x80 != 0
	n = int(b & 0x3f)
	more := b&0x40 != 0
	for i := 1; more; i++ {
		if i == MaxPrefixLength {
			return 0, data, ErrPrefixTooLong
		}
		b, err = readByte(r)
		if err != nil {
			return 0, data, unexpected(err)
		}
		n = n<<7 | int(b&0x7f)
		more = b&0x80 != 0
	}
	return n, data, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ReadData reads the next data chunk into p, skipping padding chunks, and
// returns the chunk's length. If the chunk is longer than p, the first len(p)
// bytes are copied, the rest is discarded, and the error is an *[ErrTooLong]
// (the stream stays aligned on the next chunk). io.EOF means the stream ended
// cleanly between chunks; an end inside a chunk is io.ErrUnexpectedEOF.
func ReadData(r io.Reader, p []byte) (int, error) {
	for {
		n, data, err := ReadPrefix(r)
		if err != nil {
			return 0, err
		}
		if !data {
			if err := discard(r, n); err != nil {
				return 0, err
			}
			continue
		}
		if n <= len(p) {
			if _, err := io.ReadFull(r, p[:n]); err != nil {
				return 0, unexpected(err)
			}
			return n, nil
		}
		if _, err := io.ReadFull(r, p); err != nil {
			return 0, unexpected(err)
		}
		if err := discard(r, n-len(p)); err != nil {
			return 0, err
		}
		return len(p), &ErrTooLong{Length: n, Max: len(p)}
	}
}

func discard(r io.Reader, n int) error {
	got, err := io.CopyN(io.Discard, r, int64(n))
	if got == int64(n) {
		return nil
	}
	if err == nil || err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
