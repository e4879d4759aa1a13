package e2e

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/fingerprint"
)

// chromiumJA4 is the JA4 of Chromium 156's DTLS ClientHello, as
// common/dtlsshape's tests know it: what our proxy sends in mimic mode.
const chromiumJA4 = "dd3i140900_fa23b50283d1_01b4b87481e4"

// chromiumCipherSuites are the suites of Chromium's DTLS ClientHello in its
// order: mimic offers them so, randomizemimic shuffled, randomize and
// disable offer pion's.
var chromiumCipherSuites = []uint16{
	0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xcca9, 0xcca8,
	0xc009, 0xc013, 0xc00a, 0xc014, 0x009c, 0x002f, 0x0035,
}

// Extension types a shaped ServerHello orders as BoringSSL does.
const (
	extKeyShare          = 0x0033
	extSupportedVersions = 0x002b
)

// handshakeCapture records every datagram on the namespace's loopback
// while one pairing of the matrix sets up its WebRTC connection, so that
// the test reads the DTLS hellos the real processes sent.
type handshakeCapture struct {
	c *fingerprint.Capture
}

// startHandshakeCapture starts recording UDP. In the test's namespace
// (loopback only, one pairing at a time) that is the STUN and DTLS traffic
// of this pairing's client and proxy and nothing else.
func startHandshakeCapture(t *testing.T, ctx context.Context, dumpcap, tshark string) *handshakeCapture {
	t.Helper()
	c, err := fingerprint.StartCapture(ctx, fingerprint.CaptureConfig{
		Interface: "lo", Filter: "udp", Dumpcap: dumpcap, Tshark: tshark,
		File: filepath.Join(t.TempDir(), "handshake.pcapng"),
	})
	if err != nil {
		t.Fatalf("start capture: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &handshakeCapture{c: c}
}

// wireHellos are the DTLS hellos of one pairing, by sender: the proxy is
// the DTLS client (ClientHello), the client the DTLS server (ServerHello);
// and the certificates each sent in the clear (DTLS 1.2 only: DTLS 1.3
// encrypts them).
type wireHellos struct {
	proxy       []*fingerprint.ClientHello
	client      []*fingerprint.ServerHello
	proxyCerts  []*x509.Certificate
	clientCerts []*x509.Certificate
}

// stop ends the capture and decodes its hellos; it may run while the
// download goes on, since the handshake is over by then.
func (h *handshakeCapture) stop(ctx context.Context) (wireHellos, error) {
	var w wireHellos
	packets, err := h.c.Stop(ctx)
	if err != nil {
		return w, fmt.Errorf("capture: %w", err)
	}
	hellos, err := fingerprint.Extract(packets)
	if err != nil {
		return w, fmt.Errorf("decode capture: %w", err)
	}
	proxies, clients := map[netip.AddrPort]bool{}, map[netip.AddrPort]bool{}
	for _, x := range hellos {
		switch {
		case !x.DTLS:
		case x.Client != nil:
			w.proxy = append(w.proxy, x.Client)
			proxies[x.Src] = true
		case x.Server != nil:
			w.client = append(w.client, x.Server)
			clients[x.Src] = true
		}
	}
	certs, err := clearCertificates(packets)
	if err != nil {
		return w, err
	}
	for src, cs := range certs {
		switch {
		case proxies[src]:
			w.proxyCerts = append(w.proxyCerts, cs...)
		case clients[src]:
			w.clientCerts = append(w.clientCerts, cs...)
		}
	}
	return w, nil
}

// typeCertificate is the handshake type of a Certificate message.
const typeCertificate = 11

// clearCertificates returns the leaf certificates sent in plaintext
// Certificate messages, by sender.
func clearCertificates(packets []fingerprint.Packet) (map[netip.AddrPort][]*x509.Certificate, error) {
	type flow struct{ src, dst netip.AddrPort }
	flows := map[flow]*fingerprint.DatagramReassembler{}
	out := map[netip.AddrPort][]*x509.Certificate{}
	for _, p := range packets {
		// RFC 7983: DTLS records start with 20 to 63; STUN with 0 to 3.
		if !p.UDP || len(p.Payload) == 0 || p.Payload[0] < 20 || p.Payload[0] > 63 {
			continue
		}
		f := flow{p.Src, p.Dst}
		r := flows[f]
		if r == nil {
			r = &fingerprint.DatagramReassembler{}
			flows[f] = r
		}
		msgs, err := r.Add(p.Payload)
		if err != nil {
			return nil, fmt.Errorf("decode %s -> %s: %w", p.Src, p.Dst, err)
		}
		for _, m := range msgs {
			if m.Type != typeCertificate {
				continue
			}
			c, err := leafCertificate(m.Body)
			if err != nil {
				return nil, fmt.Errorf("certificate from %s: %w", p.Src, err)
			}
			out[p.Src] = append(out[p.Src], c)
		}
	}
	return out, nil
}

// leafCertificate parses the first certificate of a DTLS 1.2 Certificate
// message body: a 24-bit list length, then 24-bit-prefixed DER entries.
func leafCertificate(b []byte) (*x509.Certificate, error) {
	u24 := func(b []byte) int { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }
	if len(b) < 6 || u24(b) != len(b)-3 {
		return nil, fmt.Errorf("malformed certificate list (%d bytes)", len(b))
	}
	n := u24(b[3:])
	if 6+n > len(b) {
		return nil, fmt.Errorf("certificate entry of %d bytes in %d", n, len(b))
	}
	return x509.ParseCertificate(b[6 : 6+n])
}

// checkProxyMode fails t unless every ClientHello our proxy sent shows
// mode, as common/dtlsshape's tests tell the modes apart. A shaped proxy
// (any mode but disable) sends its hello in a DTLS 1.0 record, as
// browsers do, where pion writes DTLS 1.2. mimic's hello has Chromium's
// JA4. randomizemimic offers Chromium's suites (JA4's first two parts) in
// a shuffled order, and shuffled signature algorithms (JA4's last part):
// both in Chromium's order is a 1 in 10!*9! chance. randomize and disable
// offer pion's suites, not Chromium's; the record version tells them
// apart. Certificates sent in the clear are checked as for the client
// (see certificateShows).
func checkProxyMode(t *testing.T, mode string, w wireHellos) {
	t.Helper()
	if len(w.proxy) == 0 {
		t.Fatalf("covertdtls=%s: no ClientHello of the proxy captured", mode)
	}
	for _, ch := range w.proxy {
		if err := proxyHelloShows(mode, ch); err != nil {
			t.Errorf("proxy's ClientHello does not show covertdtls=%s: %v\nJA4 %s\nJA4_r %s", mode, err, ch.JA4(), ch.JA4R())
		}
	}
	// A DTLS 1.2 server (the 2.5.1 client) gets the proxy's certificate
	// in the clear.
	for _, c := range w.proxyCerts {
		if err := certificateShows(mode, c); err != nil {
			t.Errorf("proxy's certificate does not show covertdtls=%s: %v", mode, err)
		}
	}
}

func proxyHelloShows(mode string, ch *fingerprint.ClientHello) error {
	ja4 := ch.JA4()
	wantRecord := fingerprint.VersionDTLS10
	if mode == "disable" {
		wantRecord = fingerprint.VersionDTLS12
	}
	if ch.RecordVersion != wantRecord {
		return fmt.Errorf("record version %s, want %s", fingerprint.VersionName(ch.RecordVersion), fingerprint.VersionName(wantRecord))
	}
	chromiumSuites := sameSet(ch.CipherSuites, chromiumCipherSuites)
	switch mode {
	case "mimic":
		if ja4 != chromiumJA4 {
			return fmt.Errorf("JA4 is not Chromium's %s", chromiumJA4)
		}
	case "randomizemimic":
		if !sameJA4Head(ja4, chromiumJA4) {
			return fmt.Errorf("cipher suites are not Chromium's (JA4 %s_...)", ja4Head(chromiumJA4))
		}
		if ja4 == chromiumJA4 && slices.Equal(ch.CipherSuites, chromiumCipherSuites) {
			return fmt.Errorf("cipher suites and signature algorithms in Chromium's order: mimic's hello, not shuffled")
		}
	case "randomize", "disable":
		if ja4 == chromiumJA4 || chromiumSuites {
			return fmt.Errorf("offers Chromium's cipher suites, not pion's")
		}
	default:
		return fmt.Errorf("unknown mode")
	}
	return nil
}

// ja4Head is JA4 without its last part: version, counts and the hash of
// the sorted cipher suites.
func ja4Head(ja4 string) string {
	return ja4[:strings.LastIndexByte(ja4, '_')]
}

func sameJA4Head(a, b string) bool { return ja4Head(a) == ja4Head(b) }

func sameSet(a, b []uint16) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// checkClientMode fails t unless what the DTLS server side of our client
// sent shows mode. The modes differ in the ClientHello only, so here
// mimic, randomize and randomizemimic look alike: a DTLS 1.3 ServerHello
// in BoringSSL's extension order (key_share, supported_versions) with a
// Random that does not start with the time, and, in DTLS 1.2 (the 2.5.1
// proxy), a browser-like certificate, whose serial has at most 64 bits.
// Under disable both are pion's own: a Random that starts with the time
// and a serial of up to 130 bits (64 bits or fewer by a 1 in 2^66 chance).
// pion's HelloRetryRequest and DTLS 1.2 ServerHello are left as pion makes
// them in every mode, and pion's full-ICE DTLS server sends no
// HelloVerifyRequest in any, so neither tells the modes apart.
func checkClientMode(t *testing.T, mode string, w wireHellos) {
	t.Helper()
	shaped := mode != "disable"
	seen := 0
	for _, sh := range w.client {
		if sh.SelectedVersion != fingerprint.VersionDTLS13 || sh.HelloRetryRequest {
			continue
		}
		seen++
		var order []uint16
		for _, e := range sh.Extensions {
			order = append(order, e.Type)
		}
		boringOrder := slices.Equal(order, []uint16{extKeyShare, extSupportedVersions})
		t0 := time.Unix(int64(binary.BigEndian.Uint32(sh.Random[:])), 0)
		timed := time.Since(t0).Abs() < 24*time.Hour
		if shaped && (!boringOrder || timed) {
			t.Errorf("client under covertdtls=%s sent pion's own DTLS 1.3 ServerHello: extensions %04x (want key_share then supported_versions), Random starting with the time %v",
				mode, order, t0.UTC())
		}
		if !shaped && !timed {
			t.Errorf("client under covertdtls=disable sent a shaped DTLS 1.3 ServerHello: Random does not start with the time (%v), extensions %04x",
				t0.UTC(), order)
		}
	}
	for _, c := range w.clientCerts {
		seen++
		if err := certificateShows(mode, c); err != nil {
			t.Errorf("client's certificate does not show covertdtls=%s: %v", mode, err)
		}
	}
	if seen == 0 {
		t.Errorf("covertdtls=%s: neither a DTLS 1.3 ServerHello nor a certificate of the client captured, nothing shows its mode\n%v", mode, w)
	}
}

// certificateShows checks a certificate sent in the clear against mode: a
// shaped peer's is browser-like (serial of at most 64 bits), pion's own
// has a serial of up to 130 bits.
func certificateShows(mode string, c *x509.Certificate) error {
	bits := c.SerialNumber.BitLen()
	if mode == "disable" && bits <= 64 {
		return fmt.Errorf("serial of %d bits, a browser's, not pion's own (up to 130)", bits)
	}
	if mode != "disable" && bits > 64 {
		return fmt.Errorf("serial of %d bits, pion's own, not a browser's (at most 64)", bits)
	}
	return nil
}

type helloResult struct {
	w   wireHellos
	err error
}

// stopAsync runs stop in the background, so that tshark's start-up does
// not add to the subtest's time.
func (h *handshakeCapture) stopAsync(ctx context.Context) <-chan helloResult {
	out := make(chan helloResult, 1)
	go func() {
		w, err := h.stop(ctx)
		out <- helloResult{w, err}
	}()
	return out
}

// String summarises the hellos for the test log.
func (w wireHellos) String() string {
	var b strings.Builder
	for _, ch := range w.proxy {
		fmt.Fprintf(&b, "proxy ClientHello: %s record %s\n", ch.JA4(), fingerprint.VersionName(ch.RecordVersion))
	}
	for _, sh := range w.client {
		t0 := time.Unix(int64(binary.BigEndian.Uint32(sh.Random[:])), 0).UTC()
		fmt.Fprintf(&b, "client ServerHello: %s retry %v Random time %s\n", sh.JA4S(), sh.HelloRetryRequest, t0.Format(time.DateOnly))
	}
	for _, c := range w.proxyCerts {
		fmt.Fprintf(&b, "proxy certificate: serial of %d bits\n", c.SerialNumber.BitLen())
	}
	for _, c := range w.clientCerts {
		fmt.Fprintf(&b, "client certificate: serial of %d bits\n", c.SerialNumber.BitLen())
	}
	return strings.TrimSuffix(b.String(), "\n")
}
