//go:build !js

package dtlsshape

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"

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

// handshake runs a real DTLS handshake on loopback between a client with
// hook and a server, moves a message each way, and returns the decoded
// hellos of both directions.
func runHandshake(t *testing.T, hook func(handshake.MessageClientHello) handshake.Message, serverSkipsHelloVerify bool) []fingerprint.Hello {
	t.Helper()
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
		c, err := dtls.ServerWithOptions(b, a.LocalAddr(), dtls.WithCertificates(cert()), dtls.WithInsecureSkipVerify(true),
			dtls.WithInsecureSkipVerifyHello(serverSkipsHelloVerify), dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
			dtls.WithSRTPProtectionProfiles(dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.SRTP_AEAD_AES_128_GCM))
		if err == nil {
			err = c.HandshakeContext(ctx)
		}
		srv <- result{c, err}
	}()
	opts := []dtls.ClientOption{dtls.WithCertificates(cert()), dtls.WithInsecureSkipVerify(true),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AEAD_AES_128_GCM)}
	if hook != nil {
		opts = append(opts, dtls.WithClientHelloMessageHook(hook))
	}
	var clientConn net.PacketConn = a
	if hook != nil {
		// A shaped peer's sockets rewrite the hello's record version.
		clientConn = newShapingUDPConn(a)
	}
	cc, err := dtls.ClientWithOptions(clientConn, b.LocalAddr(), opts...)
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
	mu.Lock()
	defer mu.Unlock()
	hellos, err := fingerprint.Extract(sent)
	if err != nil {
		t.Fatalf("decode capture: %v", err)
	}
	return hellos
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
	for _, hv := range []bool{false, true} {
		s := newShaper(Mimic, Chromium())
		hellos := clientHellos(runHandshake(t, s.clientHello, hv))
		wantHellos := 2 // first hello, then again with the cookie
		if hv {
			wantHellos = 1
		}
		if len(hellos) != wantHellos {
			t.Fatalf("skip hello verify %v: %d ClientHellos, want %d", hv, len(hellos), wantHellos)
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
	}
}

func TestMimicPermutesExtensions(t *testing.T) {
	s := newShaper(Mimic, Chromium())
	orders := map[string]bool{}
	for range 20 {
		hellos := clientHellos(runHandshake(t, s.clientHello, true))
		var o []byte
		for _, e := range hellos[0].Extensions {
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
	if hs := clientHellos(runHandshake(t, nil, true)); len(hs) == 1 {
		pionJA4 = hs[0].JA4()
	}
	for _, mode := range []Mode{Randomize, RandomizeMimic} {
		seen := map[string]bool{}
		for range 8 {
			hellos := clientHellos(runHandshake(t, newShaper(mode, Chromium()).clientHello, false))
			if len(hellos) != 2 {
				t.Fatalf("%v: %d ClientHellos", mode, len(hellos))
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
	hook := newShaper(Mimic, Chromium()).clientHello
	runHandshake(t, func(m handshake.MessageClientHello) handshake.Message {
		out := hook(m)
		b, err := out.Marshal()
		if err != nil {
			t.Error(err)
		}
		body = b
		return out
	}, true)
	raw := append([]byte{1, 0, 0, byte(len(body) >> 8), byte(len(body)), 0, 0, 0, 0, 0, 0, 0}, body...)
	raw[1], raw[2], raw[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	raw[9], raw[10], raw[11] = raw[1], raw[2], raw[3]
	p, err := ProfileFromClientHello(hex.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	got := clientHellos(runHandshake(t, newShaper(Mimic, p).clientHello, false))
	if got[0].JA4() != chromiumJA4 {
		t.Errorf("JA4 from loaded fingerprint = %s", got[0].JA4())
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
