package encapsulation

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// Golden prefixes from the wire reference (wire-protocol.md §5.3).
func TestPrefixGolden(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{
		{0, "80"},
		{1, "81"},
		{63, "bf"},
		{64, "c040"},
		{100, "c064"},
		{1400, "ca78"},
		{8191, "ff7f"},
		{8192, "c0c000"},
		{MaxLength, "ffff7f"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := hex.EncodeToString(AppendPrefix(nil, tt.n, true))
			if got != tt.want {
				t.Errorf("prefix(%d) = %s, want %s", tt.n, got, tt.want)
			}
			if PrefixLength(tt.n) != len(tt.want)/2 {
				t.Errorf("PrefixLength(%d) = %d, want %d", tt.n, PrefixLength(tt.n), len(tt.want)/2)
			}
			// The padding form differs only in the top bit.
			pad := AppendPrefix(nil, tt.n, false)
			if pad[0]&0x80 != 0 || pad[0]|0x80 != AppendPrefix(nil, tt.n, true)[0] {
				t.Errorf("padding prefix(%d) = %x", tt.n, pad)
			}
		})
	}
}

func TestRoundTripBoundaries(t *testing.T) {
	for _, n := range []int{0, 1, 62, 63, 64, 65, 1400, 8190, 8191, 8192, 8193, 65535, MaxLength - 1, MaxLength} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		var buf bytes.Buffer
		if w, err := WriteData(&buf, p); err != nil || w != n {
			t.Fatalf("WriteData(%d) = %d, %v", n, w, err)
		}
		if buf.Len() != PrefixLength(n)+n {
			t.Fatalf("WriteData(%d) wrote %d bytes", n, buf.Len())
		}
		out := make([]byte, MaxLength)
		got, err := ReadData(&buf, out)
		if err != nil || got != n || !bytes.Equal(out[:got], p) {
			t.Fatalf("ReadData after WriteData(%d) = %d, %v", n, got, err)
		}
		if _, err := ReadData(&buf, out); err != io.EOF {
			t.Fatalf("ReadData at end = %v, want io.EOF", err)
		}
	}
}

func TestWriteTooLong(t *testing.T) {
	var buf bytes.Buffer
	if _, err := WriteData(&buf, make([]byte, MaxLength+1)); !errors.Is(err, ErrTooLongToWrite) {
		t.Fatalf("err = %v", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("wrote %d bytes", buf.Len())
	}
}

func TestReadData(t *testing.T) {
	tests := []struct {
		name    string
		in      string // hex
		bufSize int
		want    []string // hex of each packet read
		err     error    // error after the packets
	}{
		{"empty stream", "", 10, nil, io.EOF},
		{"one packet", "83616263", 10, []string{"616263"}, io.EOF},
		{"zero-length packet", "80", 10, []string{""}, io.EOF},
		{"padding skipped", "0300000083616263", 10, []string{"616263"}, io.EOF},
		{"padding only", "02ffff", 10, nil, io.EOF},
		{"zero padding", "0081aa", 10, []string{"aa"}, io.EOF},
		{"long padding", "400400000000" + "81bb", 10, []string{"bb"}, io.EOF},
		{"non-minimal 2-byte", "c00361626" + "3", 10, []string{"616263"}, io.EOF},
		{"non-minimal 3-byte", "c0800361626" + "3", 10, []string{"616263"}, io.EOF},
		{"two packets", "81aa82bbcc", 10, []string{"aa", "bbcc"}, io.EOF},
		{"4th prefix byte", "c0808003", 10, nil, ErrPrefixTooLong},
		{"eof in prefix", "c0", 10, nil, io.ErrUnexpectedEOF},
		{"eof in 3-byte prefix", "c080", 10, nil, io.ErrUnexpectedEOF},
		{"eof in body", "8361", 10, nil, io.ErrUnexpectedEOF},
		{"eof in padding", "0300", 10, nil, io.ErrUnexpectedEOF},
		{"eof in skipped part", "84616263", 2, nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := hex.DecodeString(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			// Plain reader, one-byte reader and buffered reader must agree.
			readers := map[string]io.Reader{
				"plain":    bytes.NewReader(in),
				"onebyte":  iotest.OneByteReader(bytes.NewReader(in)),
				"buffered": bufio.NewReader(iotest.HalfReader(bytes.NewReader(in))),
			}
			for rname, r := range readers {
				buf := make([]byte, tt.bufSize)
				var got []string
				for {
					n, err := ReadData(r, buf)
					if err != nil {
						if !errors.Is(err, tt.err) {
							t.Errorf("%s: err = %v, want %v", rname, err, tt.err)
						}
						break
					}
					got = append(got, hex.EncodeToString(buf[:n]))
				}
				if len(got) != len(tt.want) {
					t.Fatalf("%s: got %q, want %q", rname, got, tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Errorf("%s: packet %d = %s, want %s", rname, i, got[i], tt.want[i])
					}
				}
			}
		})
	}
}

func TestReadDataTooLong(t *testing.T) {
	var buf bytes.Buffer
	WriteData(&buf, []byte("0123456789"))
	WriteData(&buf, []byte("ok"))
	p := make([]byte, 4)
	n, err := ReadData(&buf, p)
	var tl *ErrTooLong
	if !errors.As(err, &tl) || tl.Length != 10 || tl.Max != 4 {
		t.Fatalf("err = %v, want *ErrTooLong{10, 4}", err)
	}
	if n != 4 || string(p) != "0123" {
		t.Fatalf("n = %d, p = %q", n, p)
	}
	// The stream stays aligned on the next chunk.
	n, err = ReadData(&buf, p)
	if err != nil || string(p[:n]) != "ok" {
		t.Fatalf("next = %q, %v", p[:n], err)
	}
}

func TestWritePadding(t *testing.T) {
	for _, n := range []int{1, 2, 64, 65, 66, 8193, 8194, 8195, MaxLength + 5, 3 * MaxLength} {
		var buf bytes.Buffer
		if got, err := WritePadding(&buf, n); err != nil || got != n {
			t.Fatalf("WritePadding(%d) = %d, %v", n, got, err)
		}
		if buf.Len() != n {
			t.Fatalf("WritePadding(%d) wrote %d bytes", n, buf.Len())
		}
		WriteData(&buf, []byte{0xaa})
		p := make([]byte, 10)
		if m, err := ReadData(&buf, p); err != nil || m != 1 || p[0] != 0xaa {
			t.Fatalf("after padding %d: %d, %v", n, m, err)
		}
	}
	if _, err := WritePadding(io.Discard, 0); err == nil {
		t.Fatal("WritePadding(0) succeeded")
	}
}

// countingWriter records the size of each Write.
type countingWriter struct {
	bytes.Buffer
	writes []int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.Buffer.Write(p)
}

func TestBatchWriter(t *testing.T) {
	var w countingWriter
	bw := NewBatchWriterSize(&w, 100)
	var want [][]byte
	for i := range 10 {
		p := bytes.Repeat([]byte{byte(i)}, 30) // 31 bytes framed: 3 per batch
		want = append(want, p)
		if _, err := bw.WriteData(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if bw.Buffered() != 0 {
		t.Fatalf("Buffered = %d after Flush", bw.Buffered())
	}
	if len(w.writes) != 4 {
		t.Fatalf("writes = %v, want 4 batches", w.writes)
	}
	for _, n := range w.writes {
		if n > 100 {
			t.Fatalf("batch of %d > 100", n)
		}
	}
	p := make([]byte, 100)
	for i := range want {
		n, err := ReadData(&w.Buffer, p)
		if err != nil || !bytes.Equal(p[:n], want[i]) {
			t.Fatalf("packet %d: %x, %v", i, p[:n], err)
		}
	}
	// A chunk larger than the batch size goes out alone.
	bw.WriteData([]byte{1})
	bw.WriteData(make([]byte, 500))
	bw.Flush()
	if got := w.writes[len(w.writes)-2:]; got[0] != 2 || got[1] != 502 {
		t.Fatalf("writes = %v", got)
	}
	// Flush with nothing pending writes nothing.
	before := len(w.writes)
	bw.Flush()
	if len(w.writes) != before {
		t.Fatal("empty Flush wrote")
	}
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, io.ErrClosedPipe }

func TestBatchWriterError(t *testing.T) {
	bw := NewBatchWriterSize(failWriter{}, 10)
	bw.WriteData([]byte("12345678"))
	if _, err := bw.WriteData([]byte("12345678")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("err = %v", err)
	}
	if _, err := WriteData(failWriter{}, []byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("WriteData err = %v", err)
	}
}

// FuzzReadData checks that arbitrary bytes never panic the reader, that every
// packet read fits the buffer, and that re-encoding what was read and reading
// it again gives the same packets (a round trip through the shortest form).
func FuzzReadData(f *testing.F) {
	for _, s := range []string{"", "80", "83616263", "0300000083616263", "c0808003", "c0800361626" + "3", "ffff7f", "ca78"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		buf := make([]byte, 1500)
		var packets [][]byte
		for {
			n, err := ReadData(r, buf)
			var tl *ErrTooLong
			if errors.As(err, &tl) {
				if n != len(buf) || tl.Length <= len(buf) {
					t.Fatalf("ErrTooLong with n=%d length=%d", n, tl.Length)
				}
				continue
			}
			if err != nil {
				break
			}
			if n > len(buf) {
				t.Fatalf("n = %d", n)
			}
			packets = append(packets, bytes.Clone(buf[:n]))
		}
		var enc bytes.Buffer
		for _, p := range packets {
			if _, err := WriteData(&enc, p); err != nil {
				t.Fatal(err)
			}
		}
		for i, p := range packets {
			n, err := ReadData(&enc, buf)
			if err != nil || !bytes.Equal(buf[:n], p) {
				t.Fatalf("re-read packet %d: %x, %v, want %x", i, buf[:n], err, p)
			}
		}
		if _, err := ReadData(&enc, buf); err != io.EOF {
			t.Fatalf("re-read end: %v", err)
		}
	})
}

func BenchmarkWriteData(b *testing.B) {
	p := make([]byte, 1400)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		WriteData(io.Discard, p)
	}
}

func BenchmarkBatchWriter(b *testing.B) {
	p := make([]byte, 1400)
	bw := NewBatchWriter(io.Discard)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		bw.WriteData(p)
	}
	bw.Flush()
}

func BenchmarkReadData(b *testing.B) {
	var stream bytes.Buffer
	p := make([]byte, 1400)
	for range 1000 {
		WriteData(&stream, p)
	}
	data := stream.Bytes()
	r := bytes.NewReader(data)
	br := bufio.NewReader(r)
	buf := make([]byte, 2048)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadData(br, buf); err == io.EOF {
			r.Reset(data)
			br.Reset(r)
		}
	}
}
