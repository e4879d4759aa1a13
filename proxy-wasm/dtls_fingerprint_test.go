//go:build !js

package main

import (
	"context"
	"crypto/x509"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/fingerprint"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestDTLSLikeChromium is issue 9's comparison, in one run and one
// capture: Chromium's DTLS ClientHello (the page proxy answering our
// client), our standalone proxy's answering the same client in its
// default mode, and the ServerHellos of our client in both cases and of
// Chromium's own server side (two RTCPeerConnections in the same browser).
//
// Our proxy's ClientHello must have Chromium's JA4, record version and
// key-share sizes, and offer the same versions, suites, extension set,
// groups, key-share groups and signature algorithms. The certificates of
// our proxy and client (plaintext in DTLS 1.2) must have the subject,
// issuer, validity period, algorithms and serial size of Chromium's. Our client must send no HelloVerifyRequest and the same
// ServerHello to Chromium as to our proxy. Chromium's own ServerHello is
// DTLS 1.3; pion/dtls v3 has no DTLS 1.3, so our client's (1.2) can only
// be reported next to it, not made equal.
func TestDTLSLikeChromium(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	dumpcap := testenv.LookPath(t, "dumpcap")
	tshark := testenv.LookPath(t, "tshark")
	web := webDir(t)
	n := startNetwork(t, 1*mb)
	ourClient := testenv.Binary(t, "./client")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Everything in the namespace is ours, so all UDP may be recorded:
	// WebRTC ports are ephemeral.
	capture, err := fingerprint.StartCapture(ctx, fingerprint.CaptureConfig{
		Interface: "any", Filter: "udp", Dumpcap: dumpcap, Tshark: tshark,
		File: filepath.Join(t.TempDir(), "dtls.pcapng"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()

	// Phase 1: Chromium (the page proxy) answers our client.
	ws := startWebServer(t, n, filepath.Join(web, "page"))
	ch := startChromium(t, ws.url+"index.html")
	page := ch.attach(ws.url + "index.html")
	page.waitTrue(`document.getElementById("toggle").disabled === false`, 30*time.Second)
	page.click("toggle")
	ws.waitStatus("state on", 20*time.Second, func(s status) bool { return s.State == "on" })
	waitPolls(t, ws, 1)
	start1 := time.Now()
	_, socks := n.startClient("client-chromium", ourClient)
	conn := dial(t, socks)
	n.download(conn)
	conn.Close()
	page.click("toggle")
	ws.waitStatus("state off", 15*time.Second, func(s status) bool { return s.State == "off" && s.Active == 0 })

	// Phase 2: our standalone proxy, default mode, answers our client.
	start2 := time.Now()
	p := n.startNativeProxy()
	_, socks = n.startClient("client-native", ourClient)
	conn = dial(t, socks)
	n.download(conn)
	conn.Close()
	p.Stop()

	// Phase 3: Chromium against itself, the reference for a browser's
	// DTLS server side.
	start3 := time.Now()
	if _, err := page.eval(`(async () => {
		const a = new RTCPeerConnection(), b = new RTCPeerConnection();
		a.onicecandidate = e => e.candidate && b.addIceCandidate(e.candidate);
		b.onicecandidate = e => e.candidate && a.addIceCandidate(e.candidate);
		const dc = a.createDataChannel("reference");
		dc.onopen = () => { window.referenceOpen = true; };
		await a.setLocalDescription(await a.createOffer());
		await b.setRemoteDescription(a.localDescription);
		await b.setLocalDescription(await b.createAnswer());
		await a.setRemoteDescription(b.localDescription);
		return true;
	})()`); err != nil {
		t.Fatalf("reference connection: %v", err)
	}
	page.waitTrue(`window.referenceOpen === true`, 30*time.Second)
	// Let the last handshake datagrams reach the capture file.
	time.Sleep(time.Second)

	packets, err := capture.Stop(ctx)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	hellos, err := fingerprint.Extract(packets)
	if err != nil {
		t.Logf("some flows did not decode: %v", err)
	}
	type phase struct {
		clients    []*fingerprint.ClientHello
		servers    []*fingerprint.ServerHello
		verify     int
		dtlsServer netip.AddrPort // who sent the first ServerHello
	}
	phases := make([]phase, 3)
	for _, h := range hellos {
		if !h.DTLS {
			continue
		}
		i := 0
		switch {
		case h.Time.After(start3):
			i = 2
		case h.Time.After(start2):
			i = 1
		case h.Time.Before(start1):
			continue
		}
		switch {
		case h.Client != nil:
			phases[i].clients = append(phases[i].clients, h.Client)
		case h.Server != nil:
			if len(phases[i].servers) == 0 {
				phases[i].dtlsServer = h.Src
			}
			phases[i].servers = append(phases[i].servers, h.Server)
		case h.Verify != nil:
			phases[i].verify++
		}
	}
	for i, name := range []string{"Chromium page proxy ↔ our client", "our proxy ↔ our client", "Chromium ↔ Chromium"} {
		ph := phases[i]
		if len(ph.clients) == 0 || len(ph.servers) == 0 {
			t.Fatalf("%s: captured %d ClientHellos and %d ServerHellos", name, len(ph.clients), len(ph.servers))
		}
		t.Logf("%s:\n  ClientHello %s\n  JA4 %s\n  ServerHello %s", name, ph.clients[0], ph.clients[0].JA4(), ph.servers[0])
	}

	chromium, ours := phases[0].clients[0], phases[1].clients[0]
	if ours.JA4() != chromium.JA4() {
		t.Errorf("our proxy's JA4 %s, Chromium's %s\n ours     %s\n chromium %s", ours.JA4(), chromium.JA4(), ours.JA4R(), chromium.JA4R())
	}
	sortedTypes := func(c *fingerprint.ClientHello) []uint16 {
		var ts []uint16
		for _, e := range c.Extensions {
			ts = append(ts, e.Type)
		}
		slices.Sort(ts)
		return ts
	}
	keyShareGroups := func(c *fingerprint.ClientHello) []uint16 {
		var gs []uint16
		for _, k := range c.KeyShares {
			gs = append(gs, k.Group)
		}
		return gs
	}
	for _, f := range []struct {
		what string
		get  func(*fingerprint.ClientHello) []uint16
	}{
		{"cipher suites", func(c *fingerprint.ClientHello) []uint16 { return c.CipherSuites }},
		{"extension set", sortedTypes},
		{"supported_versions", func(c *fingerprint.ClientHello) []uint16 { return c.SupportedVersions }},
		{"supported_groups", func(c *fingerprint.ClientHello) []uint16 { return c.SupportedGroups }},
		{"key share groups", keyShareGroups},
		{"signature algorithms", func(c *fingerprint.ClientHello) []uint16 { return c.SignatureAlgorithms }},
	} {
		if a, b := f.get(ours), f.get(chromium); !slices.Equal(a, b) {
			t.Errorf("%s: ours %x, Chromium's %x", f.what, a, b)
		}
	}
	for _, k := range ours.KeyShares {
		if k2 := slices.IndexFunc(chromium.KeyShares, func(c fingerprint.KeyShare) bool { return c.Group == k.Group }); k2 >= 0 && chromium.KeyShares[k2].KeyLen != k.KeyLen {
			t.Errorf("key share %#04x: %d bytes, Chromium's %d", k.Group, k.KeyLen, chromium.KeyShares[k2].KeyLen)
		}
	}
	if ours.RecordVersion != chromium.RecordVersion {
		t.Errorf("ClientHello record version %#04x, Chromium's %#04x", ours.RecordVersion, chromium.RecordVersion)
	}
	if len(ours.SessionID) != len(chromium.SessionID) {
		t.Errorf("session id of %d bytes, Chromium's %d", len(ours.SessionID), len(chromium.SessionID))
	}
	for i, ph := range phases[:2] {
		if ph.verify != 0 {
			t.Errorf("phase %d: our client sent %d HelloVerifyRequests; Chromium sends none", i+1, ph.verify)
		}
	}

	// DTLS 1.2 sends certificates in the clear: ours must look like the
	// one Chromium sent in phase 1.
	certs := dtlsCertificates(t, packets, start1, start3)
	var chromiumCert *x509.Certificate
	var ourCerts []*x509.Certificate
	for _, c := range certs {
		switch {
		// The DTLS server sends its certificate in the flight of its
		// ServerHello, so from the same address; the client's may come
		// from another candidate once ICE switched pairs.
		case c.at.Before(start2) && c.from != phases[0].dtlsServer:
			chromiumCert = c.cert
		default: // our client's (phases 1 and 2) and our proxy's
			ourCerts = append(ourCerts, c.cert)
		}
	}
	if chromiumCert == nil || len(ourCerts) < 3 {
		t.Fatalf("captured Chromium's certificate %v and %d of ours, want 3 (client twice, proxy)", chromiumCert != nil, len(ourCerts))
	}
	t.Logf("Chromium's certificate: CN=%q, valid %v, %d-bit serial, %v", chromiumCert.Subject.CommonName,
		chromiumCert.NotAfter.Sub(chromiumCert.NotBefore), chromiumCert.SerialNumber.BitLen(), chromiumCert.SignatureAlgorithm)
	for _, c := range ourCerts {
		if c.Subject.String() != chromiumCert.Subject.String() || c.Issuer.String() != chromiumCert.Issuer.String() {
			t.Errorf("certificate subject %q issuer %q, Chromium's %q %q", c.Subject, c.Issuer, chromiumCert.Subject, chromiumCert.Issuer)
		}
		if d, want := c.NotAfter.Sub(c.NotBefore), chromiumCert.NotAfter.Sub(chromiumCert.NotBefore); d != want {
			t.Errorf("certificate valid for %v, Chromium's for %v", d, want)
		}
		if c.SerialNumber.BitLen() > 64 {
			t.Errorf("certificate serial of %d bits; Chromium's are at most 64", c.SerialNumber.BitLen())
		}
		if c.SignatureAlgorithm != chromiumCert.SignatureAlgorithm || c.PublicKeyAlgorithm != chromiumCert.PublicKeyAlgorithm {
			t.Errorf("certificate %v/%v, Chromium's %v/%v", c.PublicKeyAlgorithm, c.SignatureAlgorithm, chromiumCert.PublicKeyAlgorithm, chromiumCert.SignatureAlgorithm)
		}
	}

	toChromium, toOurs, reference := phases[0].servers[0].Summary(), phases[1].servers[0].Summary(), phases[2].servers[0].Summary()
	if !toChromium.Equal(toOurs) {
		t.Errorf("our client's ServerHello differs by peer: to Chromium %s, to our proxy %s", toChromium, toOurs)
	}
	if !toChromium.Equal(reference) {
		t.Logf("KNOWN DIFFERENCE (pion/dtls v3 has no DTLS 1.3): our client's ServerHello %s, Chromium's own %s", toChromium, reference)
	}
}

type capturedCert struct {
	at   time.Time
	from netip.AddrPort
	cert *x509.Certificate
}

// dtlsCertificates returns the certificates of the plaintext DTLS 1.2
// Certificate messages captured between from and to.
func dtlsCertificates(t *testing.T, packets []fingerprint.Packet, from, to time.Time) []capturedCert {
	t.Helper()
	const typeCertificate = 11
	type flow struct{ src, dst netip.AddrPort }
	flows := map[flow]*fingerprint.DatagramReassembler{}
	var out []capturedCert
	for _, p := range packets {
		// DTLS records start with a content type of 20 to 63 (RFC 7983).
		if !p.UDP || p.Time.Before(from) || p.Time.After(to) || len(p.Payload) == 0 || p.Payload[0] < 20 || p.Payload[0] > 63 {
			continue
		}
		k := flow{p.Src, p.Dst}
		r := flows[k]
		if r == nil {
			r = &fingerprint.DatagramReassembler{}
			flows[k] = r
		}
		msgs, err := r.Add(p.Payload)
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if m.Type != typeCertificate {
				continue
			}
			// certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1>;
			// the first is the end-entity certificate.
			b := m.Body
			if len(b) < 6 {
				t.Fatalf("short Certificate message from %v", p.Src)
			}
			n := int(b[3])<<16 | int(b[4])<<8 | int(b[5])
			if 6+n > len(b) {
				t.Fatalf("truncated Certificate message from %v", p.Src)
			}
			c, err := x509.ParseCertificate(b[6 : 6+n])
			if err != nil {
				t.Fatalf("certificate from %v: %v", p.Src, err)
			}
			out = append(out, capturedCert{at: p.Time, from: p.Src, cert: c})
		}
	}
	return out
}
