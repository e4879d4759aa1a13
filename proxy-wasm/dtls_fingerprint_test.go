//go:build !js

package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
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
// groups, key-share groups and signature algorithms. Our client must send
// no HelloVerifyRequest, and its ServerHello, to Chromium as to our proxy,
// must select the version (DTLS 1.3 through supported_versions) and cipher
// suite and carry the extension set of Chromium's own server side. DTLS
// 1.3 encrypts certificates, so they are read from Chromium's
// RTCCertificateStats: our client's (the page proxy's remote certificate)
// must have the subject, issuer, validity period, algorithms and serial
// size of Chromium's.
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
	// Every RTCPeerConnection the page makes is recorded, for its stats.
	ws, page := startPageProxy(t, n, web, true)
	start1 := time.Now()
	_, socks := n.startClient("client-chromium", ourClient)
	conn := dial(t, socks)
	// Read the page proxy's stats while its connection carries the
	// download: once the client is done the proxy may close it.
	statsc := make(chan []pcStats, 1)
	go func() { statsc <- pollDTLSStats(page, 30*time.Second) }()
	n.download(conn)
	conn.Close()
	phase1Stats := <-statsc
	if len(phase1Stats) == 0 {
		t.Fatal("no RTCPeerConnection of the page proxy had a connected DTLS transport")
	}
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
	referenceStats := pollDTLSStats(page, 10*time.Second)
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
	// The groups change between Chromium versions: 148 offers no ML-KEM
	// group in DTLS, 156 leads with X25519MLKEM768.
	versioned := testenv.VersionedErrorf(t)
	for _, f := range []struct {
		what   string
		get    func(*fingerprint.ClientHello) []uint16
		errorf func(string, ...any)
	}{
		{"cipher suites", func(c *fingerprint.ClientHello) []uint16 { return c.CipherSuites }, t.Errorf},
		{"extension set", sortedTypes, t.Errorf},
		{"supported_versions", func(c *fingerprint.ClientHello) []uint16 { return c.SupportedVersions }, t.Errorf},
		{"supported_groups", func(c *fingerprint.ClientHello) []uint16 { return c.SupportedGroups }, versioned},
		{"key share groups", keyShareGroups, versioned},
		{"signature algorithms", func(c *fingerprint.ClientHello) []uint16 { return c.SignatureAlgorithms }, t.Errorf},
	} {
		if a, b := f.get(ours), f.get(chromium); !slices.Equal(a, b) {
			f.errorf("%s: ours %x, Chromium's %x", f.what, a, b)
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

	// Certificates, from Chromium's stats: its own in the reference
	// connection, and ours as the page proxy's peer.
	var chromiumCert *x509.Certificate
	for _, st := range referenceStats {
		if st.local != nil {
			chromiumCert = st.local
		}
	}
	var ourCerts []*x509.Certificate
	for _, st := range phase1Stats {
		if st.remote != nil {
			ourCerts = append(ourCerts, st.remote)
		}
		t.Logf("page proxy ↔ our client: DTLS %s %s", st.version, st.cipher)
		if st.version != "FEFC" {
			t.Errorf("page proxy ↔ our client negotiated DTLS version %s, want FEFC (DTLS 1.3) as between browsers", st.version)
		}
	}
	if chromiumCert == nil || len(ourCerts) == 0 {
		t.Fatalf("stats gave Chromium's certificate %v and %d of our client's", chromiumCert != nil, len(ourCerts))
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
		t.Errorf("our client's ServerHello %s, Chromium's own %s", toChromium, reference)
	}
	// JA4S also hashes the extension order.
	if a, b := phases[0].servers[0].JA4S(), phases[2].servers[0].JA4S(); a != b {
		t.Errorf("our client's ServerHello JA4S %s, Chromium's %s", a, b)
	}
	for i, ph := range phases[:2] {
		sh := ph.servers[0]
		if t0 := time.Unix(int64(binary.BigEndian.Uint32(sh.Random[:])), 0); time.Since(t0).Abs() < 24*time.Hour {
			t.Errorf("phase %d: our client's ServerHello Random starts with the time (%v); Chromium's is all random", i+1, t0)
		}
	}
	if reference.Version != fingerprint.VersionDTLS13 {
		t.Errorf("Chromium's reference ServerHello selects %#04x, not DTLS 1.3: the reference is not what issue 9 measured", reference.Version)
	}
	for i, ph := range phases {
		for _, sh := range ph.servers {
			if sh.HelloRetryRequest {
				t.Errorf("phase %d: a HelloRetryRequest (%s); the first flight's key shares should do", i+1, sh.Summary())
			}
		}
	}
}

// recordPeerConnections wraps the page's RTCPeerConnection constructor so
// that every connection made (by the proxy's WebAssembly or the page) is
// kept in window.recordedPCs.
const recordPeerConnections = `(() => {
	const Orig = window.RTCPeerConnection;
	window.recordedPCs = [];
	const Recorded = function (...args) {
		const pc = new Orig(...args);
		window.recordedPCs.push(pc);
		return pc;
	};
	Recorded.prototype = Orig.prototype;
	Object.setPrototypeOf(Recorded, Orig);
	window.RTCPeerConnection = Recorded;
	return true;
})()`

// pcStats is what Chromium reports of one connected RTCPeerConnection's
// DTLS transport.
type pcStats struct {
	version, cipher string
	local, remote   *x509.Certificate
}

// pollDTLSStats returns the DTLS stats of the page's connected
// RTCPeerConnections (RTCTransportStats and RTCCertificateStats) as soon
// as there are any, or nothing after timeout.
func pollDTLSStats(page *cdpSession, timeout time.Duration) []pcStats {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if st, err := readDTLSStats(page); err == nil && len(st) > 0 {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

func readDTLSStats(page *cdpSession) ([]pcStats, error) {
	v, err := page.eval(`(async () => {
		const out = [];
		for (const pc of window.recordedPCs || []) {
			if (pc.connectionState !== "connected") continue;
			const stats = [...(await pc.getStats()).values()];
			const certs = {};
			for (const s of stats) if (s.type === "certificate") certs[s.id] = s.base64Certificate;
			for (const s of stats) {
				if (s.type !== "transport" || s.dtlsState !== "connected") continue;
				out.push({version: s.tlsVersion || "", cipher: s.dtlsCipher || "",
					local: certs[s.localCertificateId] || "", remote: certs[s.remoteCertificateId] || ""});
			}
		}
		return JSON.stringify(out);
	})()`)
	if err != nil {
		return nil, err
	}
	var text string
	if err := json.Unmarshal(v, &text); err != nil {
		return nil, err
	}
	var raw []struct{ Version, Cipher, Local, Remote string }
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, fmt.Errorf("stats %s: %w", text, err)
	}
	parse := func(b64 string) (*x509.Certificate, error) {
		if b64 == "" {
			return nil, nil
		}
		der, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, err
		}
		return x509.ParseCertificate(der)
	}
	var out []pcStats
	for _, r := range raw {
		local, err := parse(r.Local)
		if err != nil {
			return nil, fmt.Errorf("certificate in stats: %w", err)
		}
		remote, err := parse(r.Remote)
		if err != nil {
			return nil, fmt.Errorf("certificate in stats: %w", err)
		}
		out = append(out, pcStats{version: r.Version, cipher: r.Cipher, local: local, remote: remote})
	}
	return out, nil
}
