package amp

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"golang.org/x/net/html"
)

// Armor layout constants.
const (
	armorVersion = '0'
	// lineLength characters of base64 per line; with its LF a line is 33
	// bytes.
	lineLength = 32
	// elementSizeLimit is the AMP validator's limit on one <pre>'s text;
	// maxLinesPerElement full lines fit in it.
	elementSizeLimit   = 32 * 1024
	maxLinesPerElement = (elementSizeLimit - 1) / (lineLength + 1)
)

// armorPrefix is the fixed AMP document head: the boilerplate required by
// the AMP HTML specification so that the cache accepts the page.
const armorPrefix = `<!doctype html>
<html amp>
<head>
<meta charset="utf-8">
<script async src="https://cdn.ampproject.org/v0.js"></script>
<link rel="canonical" href="#">
<meta name="viewport" content="width=device-width">
<style amp-boilerplate>body{-webkit-animation:-amp-start 8s steps(1,end) 0s 1 normal both;-moz-animation:-amp-start 8s steps(1,end) 0s 1 normal both;-ms-animation:-amp-start 8s steps(1,end) 0s 1 normal both;animation:-amp-start 8s steps(1,end) 0s 1 normal both}@-webkit-keyframes -amp-start{from{visibility:hidden}to{visibility:visible}}@-moz-keyframes -amp-start{from{visibility:hidden}to{visibility:visible}}@-ms-keyframes -amp-start{from{visibility:hidden}to{visibility:visible}}@-o-keyframes -amp-start{from{visibility:hidden}to{visibility:visible}}@keyframes -amp-start{from{visibility:hidden}to{visibility:visible}}</style><noscript><style amp-boilerplate>body{-webkit-animation:none;-moz-animation:none;-ms-animation:none;animation:none}</style></noscript>
</head>
<body>
`

const armorSuffix = "</body>\n</html>\n"

// armorEncoder is the io.WriteCloser returned by NewArmorEncoder.
type armorEncoder struct {
	w        *bufio.Writer
	b64      io.WriteCloser
	lines    lineWriter
	started  bool
	closed   bool
	firstErr error
}

// lineWriter cuts its input into 32-character lines grouped into <pre>
// elements.
type lineWriter struct {
	w           *bufio.Writer
	lineLen     int
	linesInElem int
	inElem      bool
}

func (l *lineWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if !l.inElem {
			l.w.WriteString("<pre>\n")
			l.inElem = true
		}
		l.w.WriteByte(c)
		l.lineLen++
		if l.lineLen == lineLength {
			l.w.WriteByte('\n')
			l.lineLen = 0
			l.linesInElem++
			if l.linesInElem == maxLinesPerElement {
				l.w.WriteString("</pre>\n")
				l.inElem = false
				l.linesInElem = 0
			}
		}
	}
	return len(p), nil
}

func (l *lineWriter) finish() {
	if l.lineLen > 0 {
		l.w.WriteByte('\n')
	}
	if l.inElem {
		l.w.WriteString("</pre>\n")
	}
}

// NewArmorEncoder returns a writer that armors everything written to it into
// an AMP HTML document on w. Close completes the document (it does not close
// w); the document is incomplete until then.
func NewArmorEncoder(w io.Writer) io.WriteCloser {
	bw := bufio.NewWriter(w)
	e := &armorEncoder{w: bw}
	e.lines.w = bw
	e.b64 = base64.NewEncoder(base64.StdEncoding, &e.lines)
	return e
}

func (e *armorEncoder) start() {
	if !e.started {
		e.started = true
		e.w.WriteString(armorPrefix)
		e.lines.Write([]byte{armorVersion})
	}
}

func (e *armorEncoder) Write(p []byte) (int, error) {
	if e.closed {
		return 0, errors.New("amp: write to closed armor encoder")
	}
	e.start()
	if _, err := e.b64.Write(p); err != nil {
		return 0, err
	}
	// bufio.Writer keeps its first error; report it as soon as it happens.
	if err := e.w.Flush(); err != nil {
		return 0, fmt.Errorf("amp: armor: %w", err)
	}
	return len(p), nil
}

// Close writes the rest of the document and flushes it. It is idempotent.
func (e *armorEncoder) Close() error {
	if e.closed {
		return e.firstErr
	}
	e.closed = true
	e.start()
	e.b64.Close()
	e.lines.finish()
	e.w.WriteString(armorSuffix)
	if err := e.w.Flush(); err != nil {
		e.firstErr = fmt.Errorf("amp: armor: %w", err)
	}
	return e.firstErr
}

// Armor writes payload to w as a complete armored document.
func Armor(w io.Writer, payload []byte) error {
	e := NewArmorEncoder(w)
	if _, err := e.Write(payload); err != nil {
		return err
	}
	return e.Close()
}

// isASCIISpace reports the HTML "ASCII whitespace" characters.
func isASCIISpace(c byte) bool {
	return c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' '
}

// ErrArmorVersion is returned when the de-armored text does not start with
// the format byte '0' (including when there is no <pre> text at all).
var ErrArmorVersion = errors.New("amp: armored data has an unknown format")

// ErrArmorTruncated is returned when the document ends inside a <pre>
// element.
var ErrArmorTruncated = errors.New("amp: armored document ends inside a <pre> element")

// DecodeArmor reads an armored HTML document from r and returns its payload.
// Callers should bound r (e.g. with io.LimitReader) when it is untrusted.
func DecodeArmor(r io.Reader) ([]byte, error) {
	z := html.NewTokenizer(r)
	var text []byte
	depth := 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			if err := z.Err(); err != io.EOF {
				return nil, fmt.Errorf("amp: dearmor: %w", err)
			}
			if depth > 0 {
				// The encoder always closes its elements: the document
				// was cut short, and whole base64 quanta before the cut
				// would decode to a shorter payload without complaint.
				return nil, ErrArmorTruncated
			}
			return decodeArmorText(text)
		case html.StartTagToken:
			if name, _ := z.TagName(); string(name) == "pre" {
				depth++
			}
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "pre" && depth > 0 {
				depth--
			}
		case html.TextToken:
			if depth > 0 {
				for _, c := range z.Text() {
					if !isASCIISpace(c) {
						text = append(text, c)
					}
				}
			}
		}
	}
}

func decodeArmorText(text []byte) ([]byte, error) {
	if len(text) == 0 || text[0] != armorVersion {
		return nil, ErrArmorVersion
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(text)-1))
	n, err := base64.StdEncoding.Decode(out, text[1:])
	if err != nil {
		return nil, fmt.Errorf("amp: dearmor: %w", err)
	}
	return out[:n], nil
}

// NewArmorDecoder reads a whole armored document from r and returns a reader
// of its payload.
func NewArmorDecoder(r io.Reader) (io.Reader, error) {
	b, err := DecodeArmor(r)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}
