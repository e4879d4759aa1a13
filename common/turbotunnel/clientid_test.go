package turbotunnel

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestClientIDString(t *testing.T) {
	id := ClientID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	if got := id.String(); got != "0123456789abcdef" {
		t.Errorf("String = %q", got)
	}
	if id.Network() != "clientid" {
		t.Errorf("Network = %q", id.Network())
	}
	if a, b := NewClientID(), NewClientID(); a == b {
		t.Errorf("two NewClientID calls returned %v", a)
	}
}

func TestParseClientID(t *testing.T) {
	tests := []struct {
		in      string
		want    ClientID
		wantErr bool
	}{
		{"0123456789abcdef", ClientID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}, false},
		{"0123456789ABCDEF", ClientID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}, false},
		{"0000000000000000", ClientID{}, false},
		{"", ClientID{}, true},
		{"0123456789abcde", ClientID{}, true},
		{"0123456789abcdef0", ClientID{}, true},
		{"0123456789abcdeg", ClientID{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseClientID(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadPreamble(t *testing.T) {
	token := hex.EncodeToString(Token[:])
	tests := []struct {
		name    string
		in      string // hex
		want    string // client id hex
		wantErr error
		rest    string // hex of what must remain unread
	}{
		{"ok", token + "0102030405060708", "0102030405060708", nil, ""},
		{"ok with data", token + "0102030405060708" + "83616263", "0102030405060708", nil, "83616263"},
		{"empty", "", "", io.EOF, ""},
		{"short token", "129360", "", ErrShortToken, ""},
		{"bad token", "1293605d278175f6" + "0102030405060708", "", ErrBadToken, "0102030405060708"},
		{"http request", hex.EncodeToString([]byte("GET / HTTP/1.1\r\n")), "", ErrBadToken, ""},
		{"token only", token, "", ErrShortClientID, ""},
		{"short client id", token + "010203", "", ErrShortClientID, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, _ := hex.DecodeString(tt.in)
			for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in))} {
				id, err := ReadPreamble(r)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if err == nil && id.String() != tt.want {
					t.Errorf("id = %v, want %v", id, tt.want)
				}
				if tt.rest != "" {
					rest, _ := io.ReadAll(r)
					if hex.EncodeToString(rest) != tt.rest {
						t.Errorf("rest = %x, want %s", rest, tt.rest)
					}
				}
			}
		})
	}
}

func TestAppendPreamble(t *testing.T) {
	id := ClientID{1, 2, 3, 4, 5, 6, 7, 8}
	got := hex.EncodeToString(AppendPreamble([]byte{0xff}, id))
	if got != "ff"+"1293605d278175f5"+"0102030405060708" {
		t.Errorf("AppendPreamble = %s", got)
	}
	back, err := ReadPreamble(bytes.NewReader(AppendPreamble(nil, id)))
	if err != nil || back != id {
		t.Errorf("round trip = %v, %v", back, err)
	}
}

// FuzzReadPreamble: arbitrary stream starts never panic; a successful read
// consumed exactly the token and an id, and the id round-trips.
func FuzzReadPreamble(f *testing.F) {
	f.Add(AppendPreamble(nil, ClientID{1, 2, 3, 4, 5, 6, 7, 8}))
	f.Add([]byte{})
	f.Add(Token[:5])
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		id, err := ReadPreamble(r)
		if err != nil {
			if len(in) >= PreambleLength && bytes.Equal(in[:8], Token[:]) {
				t.Fatalf("valid preamble rejected: %v", err)
			}
			return
		}
		if !bytes.Equal(in[:8], Token[:]) || !bytes.Equal(in[8:16], id[:]) || r.Len() != len(in)-PreambleLength {
			t.Fatalf("accepted %x as %v", in, id)
		}
		if back, err := ParseClientID(id.String()); err != nil || back != id {
			t.Fatalf("ParseClientID(%v) = %v, %v", id, back, err)
		}
	})
}
