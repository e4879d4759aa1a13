package encapsulation

import (
	"io"
)

// DefaultBatchSize is the batch size of [NewBatchWriter]. It stays well under
// the 64 KiB message limit of WebRTC data channels (pion and browsers), so one
// flushed batch always fits in one message.
const DefaultBatchSize = 16 * 1024

// BatchWriter packs several data chunks into one Write on the underlying
// writer. A client puts many KCP packets into one data-channel message this
// way, saving a message header and a wake-up per packet; the receiver sees
// an ordinary chunk stream, so peers that expect one packet per message
// still interoperate.
//
// A BatchWriter is not safe for concurrent use.
type BatchWriter struct {
	w   io.Writer
	max int
	buf []byte
}

// NewBatchWriter returns a BatchWriter flushing at [DefaultBatchSize].
func NewBatchWriter(w io.Writer) *BatchWriter {
	return NewBatchWriterSize(w, DefaultBatchSize)
}

// NewBatchWriterSize returns a BatchWriter whose Writes are at most size
// bytes, except for a single chunk that is larger by itself.
func NewBatchWriterSize(w io.Writer, size int) *BatchWriter {
	if size < 1 {
		size = DefaultBatchSize
	}
	// The buffer is allocated on first use: a server holds one BatchWriter
	// per connection, and most connections are idle.
	return &BatchWriter{w: w, max: size}
}

// WriteData adds p as one data chunk to the batch. When the batch would
// grow beyond its size, the batch so far is flushed first. p is copied, so
// the caller may reuse it at once.
func (b *BatchWriter) WriteData(p []byte) (int, error) {
	if len(p) > MaxLength {
		return 0, ErrTooLongToWrite
	}
	if len(b.buf) > 0 && len(b.buf)+PrefixLength(len(p))+len(p) > b.max {
		if err := b.Flush(); err != nil {
			return 0, err
		}
	}
	if b.buf == nil {
		b.buf = make([]byte, 0, max(b.max, PrefixLength(len(p))+len(p)))
	}
	b.buf, _ = AppendData(b.buf, p)
	return len(p), nil
}

// Buffered returns the number of bytes waiting for Flush.
func (b *BatchWriter) Buffered() int { return len(b.buf) }

// Flush writes the pending chunks, if any, in one Write. After an error the
// pending chunks are dropped: the underlying stream is then broken anyway,
// and packets above KCP are retransmitted.
func (b *BatchWriter) Flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	if cap(b.buf) > 4*b.max {
		// One oversized chunk grew the buffer; do not keep it.
		b.buf = make([]byte, 0, b.max)
	} else {
		b.buf = b.buf[:0]
	}
	return err
}
