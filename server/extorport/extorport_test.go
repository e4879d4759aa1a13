package extorport

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestHandshake(t *testing.T) {
	cookie := make([]byte, 32)
	rand.Read(cookie)
	tests := []struct {
		name      string
		userAddr  string
		torCookie []byte
		wantErr   error
	}{
		{"ipv4", "192.0.2.1:1", cookie, nil},
		{"ipv6", "[2001:db8::1]:1", cookie, nil},
		{"no address", "", cookie, nil},
		{"wrong cookie", "192.0.2.1:1", bytes.Repeat([]byte{1}, 32), ErrServerHash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			a.SetDeadline(time.Now().Add(5 * time.Second))
			b.SetDeadline(time.Now().Add(5 * time.Second))
			type result struct {
				md  *Metadata
				err error
			}
			done := make(chan result, 1)
			go func() {
				md, err := Accept(b, tt.torCookie)
				if err == nil {
					// The OR protocol follows the handshake on the same conn.
					io.Copy(b, b)
				}
				b.Close()
				done <- result{md, err}
			}()
			err := Handshake(a, cookie, tt.userAddr, "snowflake")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Handshake = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				a.Close()
				<-done
				return
			}
			a.Write([]byte("or bytes"))
			got := make([]byte, 8)
			if _, err := io.ReadFull(a, got); err != nil || string(got) != "or bytes" {
				t.Fatalf("after handshake: %q, %v", got, err)
			}
			a.Close()
			r := <-done
			if r.err != nil {
				t.Fatalf("Accept = %v", r.err)
			}
			if r.md.UserAddr != tt.userAddr || r.md.Transport != "snowflake" {
				t.Fatalf("metadata = %+v", r.md)
			}
		})
	}
}

// TestAuthHashVector checks the hash construction of tor's ext-orport-spec:
// HMAC-SHA256 keyed by the cookie over the label (no NUL), then the client
// nonce, then the server nonce; the two directions differ.
func TestAuthHashVector(t *testing.T) {
	cookie := bytes.Repeat([]byte{0x11}, 32)
	cn := bytes.Repeat([]byte{0x22}, 32)
	sn := bytes.Repeat([]byte{0x33}, 32)
	s := authHash(serverHashLabel, cookie, cn, sn)
	c := authHash(clientHashLabel, cookie, cn, sn)
	if len(s) != 32 || len(c) != 32 || bytes.Equal(s, c) {
		t.Fatalf("hashes %x %x", s, c)
	}
	// Recompute by hand-built message to make sure the label is not
	// NUL-terminated and the nonces are in client, server order.
	msg := append(append([]byte(serverHashLabel), cn...), sn...)
	if !bytes.Equal(s, hmacSHA256(cookie, msg)) {
		t.Fatal("server hash does not match HMAC(cookie, label|cn|sn)")
	}
}

func TestParseCookie(t *testing.T) {
	cookie := bytes.Repeat([]byte{0xab}, 32)
	file := FormatCookie(cookie)
	if len(file) != 64 {
		t.Fatalf("cookie file is %d bytes", len(file))
	}
	got, err := ParseCookie(file)
	if err != nil || !bytes.Equal(got, cookie) {
		t.Fatalf("ParseCookie = %x, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"short":      file[:63],
		"long":       append(bytes.Clone(file), 0),
		"bad header": append([]byte("! Extended ORPort Auth Cookie ?\n"), cookie...),
		"empty":      nil,
	} {
		if _, err := ParseCookie(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHandshakeRejects(t *testing.T) {
	cookie := make([]byte, 32)
	tests := []struct {
		name string
		tor  string // hex of what "tor" sends, after which it closes
		want error
	}{
		{"no safe cookie", "0200", ErrNoSafeCookie},
		{"eof in auth types", "01", io.ErrUnexpectedEOF},
		{"eof before server hash", "0100", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			go func() {
				in, _ := hex.DecodeString(tt.tor)
				b.Write(in)
				go io.Copy(io.Discard, b)
				time.Sleep(50 * time.Millisecond)
				b.Close()
			}()
			a.SetDeadline(time.Now().Add(5 * time.Second))
			err := Handshake(a, cookie, "", "snowflake")
			if err == nil || (!errors.Is(err, tt.want) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe)) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCommandRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	WriteCommand(&buf, CmdUserAddr, []byte("192.0.2.1:1"))
	if hex.EncodeToString(buf.Bytes()[:4]) != "0001000b" {
		t.Fatalf("header = %x", buf.Bytes()[:4])
	}
	cmd, body, err := ReadCommand(&buf)
	if err != nil || cmd != CmdUserAddr || string(body) != "192.0.2.1:1" {
		t.Fatalf("ReadCommand = %#x %q %v", cmd, body, err)
	}
	if _, _, err := ReadCommand(bytes.NewReader([]byte{0, 1, 0xff, 0xff})); err == nil {
		t.Fatal("oversize body accepted")
	}
}

// FuzzAccept feeds arbitrary client bytes to tor's side: no panic, and no
// success without a correct hash (which random input cannot produce).
func FuzzAccept(f *testing.F) {
	f.Add([]byte{})
	f.Add(append([]byte{1}, make([]byte, 64)...))
	f.Add(append([]byte{1}, make([]byte, 100)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(in), io.Discard}
		if _, err := Accept(rw, make([]byte, 32)); err == nil {
			t.Fatalf("accepted %x", in)
		}
	})
}

// FuzzReadCommand: arbitrary bytes never panic and round-trip.
func FuzzReadCommand(f *testing.F) {
	f.Add([]byte{0, 1, 0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0x10, 0, 0, 0})
	f.Add([]byte{0, 2, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		cmd, body, err := ReadCommand(bytes.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		WriteCommand(&buf, cmd, body)
		if !bytes.Equal(buf.Bytes(), in[:4+len(body)]) {
			t.Fatalf("round trip %x -> %x", in, buf.Bytes())
		}
	})
}

func hmacSHA256(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}
