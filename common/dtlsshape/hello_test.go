//go:build !js

package dtlsshape

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v4"
	dtlselliptic "github.com/pion/dtls/v4/pkg/crypto/elliptic"
	"github.com/pion/dtls/v4/pkg/protocol"
	"github.com/pion/dtls/v4/pkg/protocol/extension"
	"github.com/pion/dtls/v4/pkg/protocol/handshake"

	"github.com/snowflake-go/snowflake/internal/fingerprint"
)

// chromiumJA4 is the JA4 of Chromium 156's DTLS ClientHello, measured on
// loopback (issue 9) and recomputed from a capture for Chromium().
const chromiumJA4 = "dd3i140900_fa23b50283d1_01b4b87481e4"

// recordingConn records every datagram written through it.
type recordingConn struct {
	*net.UDPConn
	mu   *sync.Mutex
	sent *[]fingerprint.Packet
}

func (c recordingConn) WriteTo(b []byte, a net.Addr) (int, error) {
	c.mu.Lock()
	*c.sent = append(*c.sent, fingerprint.Packet{
		Src: c.LocalAddr().(*net.UDPAddr).AddrPort(), Dst: a.(*net.UDPAddr).AddrPort(),
		UDP: true, Payload: bytes.Clone(b),
	})
	c.mu.Unlock()
	return c.UDPConn.WriteTo(b, a)
}

// peerConfig is one side of a test handshake.
type peerConfig struct {
	// hook shapes the client's hello (nil: pion's own); curves are the
	// client's groups, as Apply sets them for the mode.
	hook   func(handshake.MessageClientHello) handshake.Message
	curves []dtlselliptic.Curve
	// server12 makes the server speak DTLS 1.2 only, as every deployed
	// Snowflake peer (pion/dtls v2 and v3) does.
	server12 bool
	// serverSkipsHelloVerify: no HelloVerifyRequest from the server.
	serverSkipsHelloVerify bool
	// clientMax12 makes the client offer DTLS 1.2 only.
	clientMax12 bool
	// serverHook shapes the server's hello (nil: pion's own).
	serverHook func(handshake.MessageServerHello) handshake.Message
}

// shaped is the client side of a shaper, as Apply configures a peer.
func shaped(s *shaper) peerConfig {
	c := peerConfig{hook: s.clientHello}
	if s.mode != Randomize {
		c.curves = s.profile.curves()
		c.clientMax12 = !s.profile.offersDTLS13()
	}
	return c
}

// runHandshake runs a real DTLS handshake on loopback between a client
// and a server, moves a message each way, and returns the decoded hellos
// of both directions and the negotiated version.
func runHandshake(t testing.TB, pc peerConfig) ([]fingerprint.Hello, protocol.Version) {
	t.Helper()
	hook := pc.hook
	var mu sync.Mutex
	var sent []fingerprint.Packet
	listen := func() recordingConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return recordingConn{c, &mu, &sent}
	}
	a, b := listen(), listen()
	cert := func() tls.Certificate {
		key, c, err := newCertificate(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		c   *dtls.Conn
		err error
	}
	srv := make(chan result, 1)
	go func() {
		opts := []dtls.ServerOption{dtls.WithCertificates(cert()), dtls.WithInsecureSkipVerify(true),
			dtls.WithInsecureSkipVerifyHello(pc.serverSkipsHelloVerify), dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
			dtls.WithSRTPProtectionProfiles(dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.SRTP_AEAD_AES_128_GCM)}
		if pc.serverHook != nil {
			opts = append(opts, dtls.WithServerHelloMessageHook(pc.serverHook))
		}
		if pc.server12 {
			opts = append(opts, dtls.WithMaxVersion(protocol.Version1_2))
		} else {
			opts = append(opts, dtls.WithMaxVersion(protocol.Version1_3))
		}
		c, err := dtls.Server(b, a.LocalAddr(), opts...)
		if err == nil {
			err = c.HandshakeContext(ctx)
		}
		srv <- result{c, err}
	}()
	opts := []dtls.ClientOption{dtls.WithCertificates(cert()), dtls.WithInsecureSkipVerify(true),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AEAD_AES_128_GCM),
		dtls.WithMaxVersion(protocol.Version1_3)}
	if pc.clientMax12 {
		opts = append(opts, dtls.WithMaxVersion(protocol.Version1_2))
	}
	if len(pc.curves) > 0 {
		opts = append(opts, dtls.WithEllipticCurves(pc.curves...))
	}
	if hook != nil {
		opts = append(opts, dtls.WithClientHelloMessageHook(hook))
	}
	var clientConn net.PacketConn = a
	if hook != nil {
		// A shaped peer's sockets rewrite the hello's record version.
		clientConn = newShapingUDPConn(a)
	}
	cc, err := dtls.Client(clientConn, b.LocalAddr(), opts...)
	if err == nil {
		err = cc.HandshakeContext(ctx)
	}
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	defer cc.Close()
	r := <-srv
	if r.err != nil {
		t.Fatalf("server handshake: %v", r.err)
	}
	defer r.c.Close()
	// Application data both ways proves the keys agree.
	if _, err := cc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.c.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("server read %q, %v", buf[:n], err)
	}
	state, ok := cc.ConnectionState()
	if !ok {
		t.Fatal("no connection state")
	}
	mu.Lock()
	defer mu.Unlock()
	hellos, err := fingerprint.Extract(sent)
	if err != nil {
		t.Fatalf("decode capture: %v", err)
	}
	return hellos, state.NegotiatedVersion()
}

func clientHellos(hs []fingerprint.Hello) []*fingerprint.ClientHello {
	var out []*fingerprint.ClientHello
	for _, h := range hs {
		if h.Client != nil {
			out = append(out, h.Client)
		}
	}
	return out
}

func TestMimicClientHelloIsChromiums(t *testing.T) {
	// Against a DTLS 1.3 server (a Snowflake peer of this version) the
	// handshake completes in DTLS 1.3 on the first flight's key shares;
	// against a DTLS 1.2 server, with and without a HelloVerifyRequest
	// (deployed peers send one), it falls back to DTLS 1.2.
	for _, tc := range []struct {
		server12, skipHV bool
		want             protocol.Version
	}{
		{false, true, protocol.Version1_3},
		{true, true, protocol.Version1_2},
		{true, false, protocol.Version1_2},
	} {
		pc := shaped(newShaper(Mimic, Chromium()))
		pc.server12, pc.serverSkipsHelloVerify = tc.server12, tc.skipHV
		all, version := runHandshake(t, pc)
		if version != tc.want {
			t.Errorf("server12 %v: negotiated %v, want %v", tc.server12, version, tc.want)
		}
		hellos := clientHellos(all)
		wantHellos := 2 // first hello, then again with the cookie
		if tc.skipHV {
			wantHellos = 1
		}
		if len(hellos) != wantHellos {
			t.Fatalf("%+v: %d ClientHellos, want %d", tc, len(hellos), wantHellos)
		}
		for _, ch := range hellos {
			if ch.RecordVersion != fingerprint.VersionDTLS10 {
				t.Errorf("record version %#04x, want DTLS 1.0 as Chromium", ch.RecordVersion)
			}
			if got := ch.JA4(); got != chromiumJA4 {
				t.Errorf("JA4 = %s, want %s\n%s", got, chromiumJA4, ch.JA4R())
			}
			if !slices.Equal(ch.SupportedVersions, []uint16{fingerprint.VersionDTLS13, fingerprint.VersionDTLS12}) {
				t.Errorf("supported_versions = %x", ch.SupportedVersions)
			}
			var groups []uint16
			for _, ks := range ch.KeyShares {
				groups = append(groups, ks.Group)
			}
			if !slices.Equal(groups, []uint16{groupX25519MLKEM768, groupX25519}) {
				t.Errorf("key share groups = %x", groups)
			}
			if len(ch.SessionID) != 0 || len(ch.Cookie) == 0 && len(hellos) == 2 && ch == hellos[1] {
				t.Errorf("session id %x, cookie %x", ch.SessionID, ch.Cookie)
			}
		}
		if len(hellos) == 2 {
			// Like a browser, the hello after the cookie is the first
			// one again: same order, same key shares.
			a, b := hellos[0], hellos[1]
			if !slices.EqualFunc(a.Extensions, b.Extensions, func(x, y fingerprint.Extension) bool {
				return x.Type == y.Type && (x.Type == 0x002c || bytes.Equal(x.Data, y.Data))
			}) {
				t.Error("second ClientHello differs from the first beyond the cookie")
			}
		}
		if !tc.server12 {
			// Chromium's server side: no HelloRetryRequest, since the
			// first flight carries the share the server picks.
			var servers int
			for _, h := range all {
				if h.Server != nil {
					servers++
				}
			}
			if servers != 1 {
				t.Errorf("%d ServerHellos, want one (no HelloRetryRequest)", servers)
			}
		}
	}
}

func TestMimicPermutesExtensions(t *testing.T) {
	s := newShaper(Mimic, Chromium())
	orders := map[string]bool{}
	for range 20 {
		pc := shaped(s)
		pc.serverSkipsHelloVerify = true
		all, _ := runHandshake(t, pc)
		var o []byte
		for _, e := range clientHellos(all)[0].Extensions {
			o = append(o, byte(e.Type>>8), byte(e.Type))
		}
		orders[hex.EncodeToString(o)] = true
	}
	// 9! orders: 20 hellos sharing one order by chance is negligible.
	if len(orders) < 10 {
		t.Errorf("%d distinct extension orders in 20 hellos, want them permuted", len(orders))
	}
}

func TestModesCompleteHandshakes(t *testing.T) {
	pionJA4 := ""
	if all, _ := runHandshake(t, peerConfig{serverSkipsHelloVerify: true}); len(clientHellos(all)) == 1 {
		pionJA4 = clientHellos(all)[0].JA4()
	}
	for _, mode := range []Mode{Randomize, RandomizeMimic} {
		seen := map[string]bool{}
		for i := range 8 {
			pc := shaped(newShaper(mode, Chromium()))
			pc.server12 = i%2 == 1 // half against a deployed (DTLS 1.2) peer
			all, version := runHandshake(t, pc)
			hellos := clientHellos(all)
			if len(hellos) != 2 {
				t.Fatalf("%v: %d ClientHellos", mode, len(hellos))
			}
			if want := map[bool]protocol.Version{false: protocol.Version1_3, true: protocol.Version1_2}[pc.server12]; version != want {
				t.Errorf("%v: negotiated %v, want %v", mode, version, want)
			}
			seen[hellos[0].JA4R()] = true
		}
		if len(seen) < 4 {
			t.Errorf("%v: %d distinct hellos in 8, want varying ones", mode, len(seen))
		}
		if seen[pionJA4] && mode == Randomize && len(seen) == 1 {
			t.Errorf("%v: hello is pion's", mode)
		}
	}
}

func TestProfileFromClientHello(t *testing.T) {
	// A Chromium hello as our mimic sends it, then loaded back as a
	// covertdtls-fingerprint, must give the same JA4.
	var body []byte
	pc := shaped(newShaper(Mimic, Chromium()))
	hook := pc.hook
	pc.hook = func(m handshake.MessageClientHello) handshake.Message {
		out := hook(m)
		b, err := out.Marshal()
		if err != nil {
			t.Error(err)
		}
		body = b
		return out
	}
	pc.serverSkipsHelloVerify = true
	runHandshake(t, pc)
	raw := append([]byte{1, 0, 0, byte(len(body) >> 8), byte(len(body)), 0, 0, 0, 0, 0, 0, 0}, body...)
	raw[1], raw[2], raw[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	raw[9], raw[10], raw[11] = raw[1], raw[2], raw[3]
	p, err := ProfileFromClientHello(hex.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := runHandshake(t, shaped(newShaper(Mimic, p)))
	if ja4 := clientHellos(got)[0].JA4(); ja4 != chromiumJA4 {
		t.Errorf("JA4 from loaded fingerprint = %s", ja4)
	}

	for _, bad := range []string{"", "zz", "0100", hex.EncodeToString(make([]byte, 60))} {
		if _, err := ProfileFromClientHello(bad); err == nil {
			t.Errorf("ProfileFromClientHello(%q) accepted", bad)
		}
	}
}

func TestCertificateLooksLikeChromiums(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for range 50 {
		_, c, err := newCertificate(now)
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject.CommonName != "WebRTC" || c.Issuer.CommonName != "WebRTC" {
			t.Errorf("subject %q issuer %q", c.Subject, c.Issuer)
		}
		if d := c.NotAfter.Sub(c.NotBefore); d != 31*24*time.Hour {
			t.Errorf("validity %v, want 31 days", d)
		}
		if !c.NotBefore.Before(now) || !c.NotAfter.After(now.Add(29*24*time.Hour)) {
			t.Errorf("validity %v to %v does not cover now and the next 29 days", c.NotBefore, c.NotAfter)
		}
		if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 64 {
			t.Errorf("serial %v has %d bits", c.SerialNumber, c.SerialNumber.BitLen())
		}
		if c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Errorf("signature %v", c.SignatureAlgorithm)
		}
	}
}

func TestShareOrder(t *testing.T) {
	for _, tc := range []struct{ groups, shares, want []uint16 }{
		{[]uint16{1, 2, 3, 4}, []uint16{1, 2}, []uint16{1, 2, 3, 4}},
		{[]uint16{2, 3, 1, 4}, []uint16{1, 2}, []uint16{1, 3, 2, 4}},
		{[]uint16{4, 2, 3, 1}, []uint16{1, 2}, []uint16{4, 1, 3, 2}},
		{[]uint16{3, 4}, []uint16{1, 2}, []uint16{3, 4}},
		{[]uint16{2, 3}, []uint16{1, 2}, []uint16{2, 3}},
		{nil, []uint16{1}, nil},
		{[]uint16{5, 6}, nil, []uint16{5, 6}},
	} {
		if got := shareOrder(tc.groups, tc.shares); !slices.Equal(got, tc.want) {
			t.Errorf("shareOrder(%v, %v) = %v, want %v", tc.groups, tc.shares, got, tc.want)
		}
	}
}

func TestServerHelloLikeChromiums(t *testing.T) {
	for _, server12 := range []bool{false, true} {
		pc := shaped(newShaper(Mimic, Chromium()))
		pc.server12, pc.serverSkipsHelloVerify, pc.serverHook = server12, true, serverHello
		all, version := runHandshake(t, pc)
		var sh *fingerprint.ServerHello
		for _, h := range all {
			if h.Server != nil {
				sh = h.Server
			}
		}
		if sh == nil {
			t.Fatal("no ServerHello captured")
		}
		var order []uint16
		for _, e := range sh.Extensions {
			order = append(order, e.Type)
		}
		t0 := time.Unix(int64(binary.BigEndian.Uint32(sh.Random[:])), 0)
		nearNow := time.Since(t0).Abs() < 24*time.Hour
		if server12 {
			// DTLS 1.2 keeps pion's hello: its keys depend on it.
			if version != protocol.Version1_2 || !nearNow {
				t.Errorf("DTLS 1.2: version %v, Random time %v", version, t0)
			}
			continue
		}
		if version != protocol.Version1_3 {
			t.Errorf("negotiated %v, want DTLS 1.3", version)
		}
		// BoringSSL's order, as captured from Chromium 156.
		if !slices.Equal(order, []uint16{extKeyShare, extSupportedVersion}) {
			t.Errorf("ServerHello extensions %x, want key_share then supported_versions", order)
		}
		if nearNow {
			t.Errorf("ServerHello Random starts with the time (%v), a pion tell", t0)
		}
	}
}

// TestProfileExtensionsPionCanSend: a covertdtls-fingerprint whose
// verbatim extensions pion cannot send (malformed, or not allowed in a
// ClientHello) is refused, not accepted to fail every handshake.
func TestProfileExtensionsPionCanSend(t *testing.T) {
	var r handshake.Random
	if err := r.Populate(); err != nil {
		t.Fatal(err)
	}
	base := handshake.MessageClientHello{
		Version: protocol.Version1_2, Random: r,
		CipherSuiteIDs:     []uint16{0xc02b},
		CompressionMethods: []*protocol.CompressionMethod{{}},
		Extensions: []extension.Value{
			extension.Raw{Type: extension.TypeRenegotiationInfo, Data: []byte{0}},
			extension.Raw{Type: extension.TypeExtendedMasterSecret},
		},
	}
	for _, e := range []extension.Raw{
		{Type: 0x0031, Data: []byte{1}},    // post_handshake_auth must be empty
		{Type: 0x0030},                     // oid_filters: not in a ClientHello
		{Type: 0x0032, Data: []byte{0, 1}}, // signature_algorithms_cert, truncated
	} {
		hello := newShaper(Mimic, Chromium()).clientHello(base).(*handshake.MessageClientHello)
		hello.Extensions = append(hello.Extensions, e)
		b, err := hello.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		p, err := ProfileFromClientHello(hex.EncodeToString(b))
		if err != nil {
			continue
		}
		pc := shaped(newShaper(Mimic, p))
		pc.serverSkipsHelloVerify = true
		t.Run(fmt.Sprintf("%#04x", uint16(e.Type)), func(t *testing.T) { runHandshake(t, pc) })
	}
}
