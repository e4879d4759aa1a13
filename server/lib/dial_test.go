package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/turbotunnel"
	"github.com/snowflake-go/snowflake/server/extorport"
)

func TestParseSourcePrefix(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"127.0.0.1", "127.0.0.1/32", false},
		{"::1", "::1/128", false},
		{"127.0.0.0/8", "127.0.0.0/8", false},
		{"127.1.2.3/16", "127.1.0.0/16", false},
		{"2001:db8::/32", "2001:db8::/32", false},
		{"", "", true},
		{"127.0.0.1/33", "", true},
		{"localhost", "", true},
		{"127.0.0.1:80", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParseSourcePrefix(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && p.String() != tt.want {
				t.Fatalf("got %v, want %s", p, tt.want)
			}
		})
	}
}

func TestRandomAddr(t *testing.T) {
	for _, s := range []string{"127.0.0.0/8", "127.0.0.1/32", "127.128.0.0/9", "2001:db8::/32", "2001:db8::5/128", "0.0.0.0/0"} {
		p := netip.MustParsePrefix(s)
		seen := map[netip.Addr]bool{}
		for range 100 {
			a := randomAddr(p)
			if !p.Contains(a) {
				t.Fatalf("randomAddr(%v) = %v, outside", p, a)
			}
			seen[a] = true
		}
		if p.Bits() < p.Addr().BitLen()-4 && len(seen) < 10 {
			t.Errorf("randomAddr(%v): only %d distinct addresses in 100", p, len(seen))
		}
	}
}

// TestORDialerSourceAddr dials through an Extended ORPort from a random
// source address in 127.0.0.0/8 (all of it is loopback on Linux).
func TestORDialerSourceAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cookie := make([]byte, 32)
	cookie[0] = 7
	type result struct {
		md     *extorport.Metadata
		remote string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		md, err := extorport.Accept(c, cookie)
		res <- result{md, c.RemoteAddr().String(), err}
	}()
	d := &ORDialer{ExtORAddr: ln.Addr().String(), AuthCookie: cookie, Transport: "snowflake",
		Source: netip.MustParsePrefix("127.0.0.0/8")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.Dial(ctx, "192.0.2.1:1")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.md.UserAddr != "192.0.2.1:1" || r.md.Transport != "snowflake" {
		t.Fatalf("metadata %+v", r.md)
	}
	host, _, _ := net.SplitHostPort(r.remote)
	if ip := netip.MustParseAddr(host); !ip.IsLoopback() {
		t.Fatalf("source %v", ip)
	}
	// A wrong cookie is refused with a clear error.
	go func() {
		c, err := ln.Accept()
		if err == nil {
			extorport.Accept(c, make([]byte, 32))
			c.Close()
		}
	}()
	if _, err := d.Dial(ctx, ""); err == nil {
		t.Fatal("dial with a wrong cookie succeeded")
	}
}

func TestAddrMap(t *testing.T) {
	m := newAddrMap(3)
	id := func(i byte) turbotunnel.ClientID { return turbotunnel.ClientID{i} }
	m.set(id(1), "a")
	m.set(id(2), "b")
	m.set(id(3), "c")
	m.set(id(1), "a2") // fresh slot for 1; evicts the oldest slot (1's old one)
	if got := m.get(id(1)); got != "a2" {
		t.Fatalf("get(1) = %q", got)
	}
	if m.get(id(2)) != "b" || m.get(id(3)) != "c" {
		t.Fatal("live records lost")
	}
	m.set(id(4), "d") // evicts 2
	if m.get(id(2)) != "" || m.get(id(4)) != "d" || m.len() != 3 {
		t.Fatalf("after eviction: 2=%q 4=%q len=%d", m.get(id(2)), m.get(id(4)), m.len())
	}
	for i := range 1000 {
		m.set(id(byte(i)), "x")
	}
	if m.len() > 3 {
		t.Fatalf("len = %d exceeds capacity", m.len())
	}
}

// TestORDialerCanceledAtHandshakeEnd: a dial whose context ends just as the
// Extended ORPort handshake completes either fails or returns a usable
// conn, never one that the context's cancellation has already timed out.
// The window is narrow, so the test tries many times.
func TestORDialerCanceledAtHandshakeEnd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cookie := make([]byte, 32)
	d := &ORDialer{ExtORAddr: ln.Addr().String(), AuthCookie: cookie, Transport: "snowflake"}
	for range 3000 {
		ctx, cancel := context.WithCancel(context.Background())
		torDone := make(chan struct{})
		go func() {
			defer close(torDone)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			if _, err := extorport.Accept(c, cookie); err != nil {
				return
			}
			// The OKAY is on its way: end the dial's context now.
			cancel()
			c.Write([]byte("or"))
			c.Read(make([]byte, 1)) // until the dialer closes
		}()
		c, err := d.Dial(ctx, "")
		if err == nil {
			// No deadline of our own: one left by the dial would show.
			timer := time.AfterFunc(5*time.Second, func() { c.Close() })
			_, err := io.ReadFull(c, make([]byte, 2))
			timer.Stop()
			c.Close()
			if err != nil {
				t.Fatalf("Dial succeeded, but the conn fails: %v", err)
			}
		}
		cancel()
		<-torDone
	}
}

// TestORDialerCookieFile: with CookieFile set, each dial authenticates with
// the cookie the file holds at that moment.
func TestORDialerCookieFile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := filepath.Join(t.TempDir(), "cookie")
	d := &ORDialer{ExtORAddr: ln.Addr().String(), CookieFile: path, Transport: "snowflake"}
	if _, err := d.Dial(context.Background(), ""); err == nil {
		t.Fatal("dial without a cookie file succeeded")
	}
	for i := range 2 {
		cookie := bytes.Repeat([]byte{byte(i + 1)}, 32)
		if err := os.WriteFile(path, extorport.FormatCookie(cookie), 0o600); err != nil {
			t.Fatal(err)
		}
		torErr := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				torErr <- err
				return
			}
			defer c.Close()
			_, err = extorport.Accept(c, cookie)
			torErr <- err
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := d.Dial(ctx, "")
		cancel()
		if err != nil {
			t.Fatalf("dial with cookie %d: %v", i, err)
		}
		c.Close()
		if err := <-torErr; err != nil {
			t.Fatalf("tor's side with cookie %d: %v", i, err)
		}
	}
}
