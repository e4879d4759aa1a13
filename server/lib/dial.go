package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/snowflake-go/snowflake/common/rawsock"
	"github.com/snowflake-go/snowflake/server/extorport"
)

// ORDialer connects client streams to tor: to its Extended ORPort when
// ExtORAddr is set (authenticating with AuthCookie and reporting the
// client's address and the transport name), else to the plain ORPort.
// Its Dial method is a Config.DialOR.
type ORDialer struct {
	// ORAddr is tor's ORPort, used when ExtORAddr is empty.
	ORAddr string
	// ExtORAddr is tor's Extended ORPort.
	ExtORAddr string
	// AuthCookie is the 32-byte cookie from tor's auth cookie file, used
	// when CookieFile is empty.
	AuthCookie []byte
	// CookieFile is tor's auth cookie file (TOR_PT_AUTH_COOKIE_FILE). If
	// set, the cookie is read from it at every dial: tor writes a fresh
	// one whenever it starts, which a server run apart from tor (by
	// systemd) outlives, and may write it only after starting its
	// transports (tor bug 15240), so a cookie read once can be stale.
	CookieFile string
	// Transport is the name reported to tor ("snowflake").
	Transport string
	// Source, if valid, is the prefix the local address of each connection
	// is drawn from at random (the orport-srcaddr option), spreading
	// connections over many source addresses so that tor's per-address
	// connection limits do not bite.
	Source netip.Prefix
}

// Dial implements Config.DialOR.
func (d *ORDialer) Dial(ctx context.Context, clientAddr string) (net.Conn, error) {
	addr := d.ORAddr
	if d.ExtORAddr != "" {
		addr = d.ExtORAddr
	}
	if addr == "" {
		return nil, fmt.Errorf("server: dial tor: no ORPort address")
	}
	var cookie []byte
	if d.ExtORAddr != "" {
		var err error
		if cookie, err = d.cookie(); err != nil {
			return nil, fmt.Errorf("server: extended orport: %w", err)
		}
	}
	var nd net.Dialer
	if d.Source.IsValid() {
		nd.LocalAddr = &net.TCPAddr{IP: randomAddr(d.Source).AsSlice()}
		nd.Control = bindNoPort
	}
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("server: dial tor: %w", err)
	}
	conn = rawsock.Wrap(conn)
	if d.ExtORAddr == "" {
		return conn, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err = extorport.Handshake(conn, cookie, clientAddr, d.Transport)
	if !stop() && err == nil {
		// ctx ended just as the handshake completed: the function above
		// has started and may set its past deadline after the reset
		// below, which would hand back a conn whose first read or write
		// times out. Report the dial as failed instead.
		err = fmt.Errorf("handshake interrupted: %w", context.Cause(ctx))
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("server: extended orport: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// cookie returns the cookie to authenticate with: tor's current one when
// CookieFile is set, else AuthCookie.
func (d *ORDialer) cookie() ([]byte, error) {
	if d.CookieFile == "" {
		return d.AuthCookie, nil
	}
	return extorport.ReadCookieFile(d.CookieFile)
}

// ParseSourcePrefix parses an orport-srcaddr value: an IP address or a CIDR
// prefix.
func ParseSourcePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("server: orport-srcaddr %q: %w", s, err)
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("server: orport-srcaddr %q: %w", s, err)
	}
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// randomAddr returns a random address inside p.
func randomAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	r := make([]byte, len(b))
	rand.Read(r)
	bits := p.Bits()
	for i := range b {
		// Keep the first `bits` bits of the prefix, randomise the rest.
		keep := min(max(bits-8*i, 0), 8)
		mask := byte(0xff << (8 - keep))
		b[i] = b[i]&mask | r[i]&^mask
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
