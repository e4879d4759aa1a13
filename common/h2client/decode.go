package h2client

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// zstdMaxWindow bounds the memory a zstd frame may demand (RFC 8878
// recommends decoders support 8 MiB windows; browsers use that too).
const zstdMaxWindow = 8 << 20

// decodeContent undoes the content coding of resp when this package
// announced Chromium's accept-encoding on the caller's behalf: the caller
// did not ask for encoded bodies and must not see them. The decoded body
// is held to limit too (the raw one already is): a small compressed body
// must not expand without bound.
func decodeContent(resp *http.Response, limit int64) error {
	coding := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	if coding == "" || coding == "identity" || resp.Body == http.NoBody {
		return nil
	}
	raw := resp.Body
	var dec io.Reader
	var closeDec func()
	switch coding {
	case "gzip", "x-gzip":
		dec = &lazyReader{open: func() (io.Reader, error) { return gzip.NewReader(raw) }}
	case "deflate":
		dec = &lazyReader{open: func() (io.Reader, error) { return openDeflate(raw) }}
	case "br":
		dec = brotli.NewReader(raw)
	case "zstd":
		zr, err := zstd.NewReader(raw, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(4*zstdMaxWindow))
		if err != nil {
			return fmt.Errorf("h2client: zstd: %w", err)
		}
		dec, closeDec = zr, zr.Close
	default:
		return fmt.Errorf("h2client: unsupported content encoding %q", coding)
	}
	resp.Body = &decodedBody{r: dec, raw: raw, closeDec: closeDec, left: limit}
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	resp.Uncompressed = true
	return nil
}

// openDeflate reads HTTP's "deflate", which servers send both as zlib
// (RFC 9110) and as raw DEFLATE; browsers accept either.
func openDeflate(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	hdr, err := br.Peek(2)
	if err == nil && hdr[0]&0x0f == 8 && (uint16(hdr[0])<<8|uint16(hdr[1]))%31 == 0 {
		return zlib.NewReader(br)
	}
	return flate.NewReader(br), nil
}

// lazyReader opens its decoder on the first Read, so that reading the
// header of a gzip or zlib stream waits for the body like any other read
// (RoundTrip returns at the response headers).
type lazyReader struct {
	open func() (io.Reader, error)
	r    io.Reader
	err  error
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if l.r == nil && l.err == nil {
		l.r, l.err = l.open()
	}
	if l.err != nil {
		return 0, l.err
	}
	return l.r.Read(p)
}

type decodedBody struct {
	r        io.Reader
	raw      io.ReadCloser
	closeDec func()
	left     int64 // decoded bytes still allowed
}

func (d *decodedBody) Read(p []byte) (int, error) {
	if d.left < 0 {
		return 0, ErrBodyTooLarge
	}
	// One byte beyond the limit tells a body that ends exactly at the
	// limit from one that goes on.
	if int64(len(p)) > d.left+1 {
		p = p[:d.left+1]
	}
	n, err := d.r.Read(p)
	d.left -= int64(n)
	if d.left < 0 {
		return n + int(d.left), ErrBodyTooLarge
	}
	if err != nil && err != io.EOF {
		err = fmt.Errorf("h2client: decode response body: %w", err)
	}
	return n, err
}

func (d *decodedBody) Close() error {
	if d.closeDec != nil {
		d.closeDec()
		d.closeDec = nil
	}
	return d.raw.Close()
}
