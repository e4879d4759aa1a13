//go:build !js

package dtlsshape

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/webrtcapi"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

func TestICECredentialsLookLikeChromiums(t *testing.T) {
	if ICECredentials(Disable) != nil {
		t.Error("Disable sets ICE credentials; pion should draw its own")
	}
	set := ICECredentials(Mimic)
	ufrag := regexp.MustCompile(`a=ice-ufrag:([A-Za-z0-9+/]{4})\r\n`)
	pwd := regexp.MustCompile(`a=ice-pwd:([A-Za-z0-9+/]{24})\r\n`)
	seen := map[string]bool{}
	for range 3 {
		var se webrtc.SettingEngine
		if err := set(&se); err != nil {
			t.Fatal(err)
		}
		pc, err := webrtcapi.New(se).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.CreateDataChannel("x", nil); err != nil {
			t.Fatal(err)
		}
		offer, err := pc.CreateOffer(nil)
		pc.Close()
		if err != nil {
			t.Fatal(err)
		}
		u, p := ufrag.FindStringSubmatch(offer.SDP), pwd.FindStringSubmatch(offer.SDP)
		if u == nil || p == nil {
			t.Fatalf("offer lacks a 4-character ufrag or a 24-character password:\n%s", offer.SDP)
		}
		if seen[u[1]+p[1]] {
			t.Errorf("credentials %s:%s drawn twice", u[1], p[1])
		}
		seen[u[1]+p[1]] = true
	}
}

// TestShapedPeersUseDTLS13 connects two peers shaped as in Mimic (the
// client and a proxy of this version) through Factories on loopback and
// checks that they agree on DTLS 1.3 with an AES-GCM suite, each with
// its own browser-shaped ICE credentials.
func TestShapedPeersUseDTLS13(t *testing.T) {
	peer := func() *webrtc.PeerConnection {
		var se webrtc.SettingEngine
		se.SetIncludeLoopbackCandidate(true)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
		if err := Apply(&se, Mimic, nil, nil); err != nil {
			t.Fatal(err)
		}
		certs, err := Certificates(Mimic)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := webrtcapi.NewFactory(se, ICECredentials(Mimic)).NewPeerConnection(webrtc.Configuration{Certificates: certs})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	offerer, answerer := peer(), peer()
	sdp, waitHello := testenv.SendHello(t, offerer, answerer)
	if !regexp.MustCompile(`a=ice-ufrag:[A-Za-z0-9+/]{4}\r\n`).MatchString(sdp) {
		t.Errorf("offer's ufrag is not 4 characters:\n%s", sdp)
	}
	// pion v5's answer, shaped, has the layout of Chromium's (one host
	// candidate each).
	answer := ShapeSDP(answerer.LocalDescription().SDP)
	if g, w := strings.Join(layout(answer), "\n"), strings.Join(layout(chromiumAnswer), "\n"); g != w {
		t.Errorf("shaped pion answer layout:\n%s\nChromium's:\n%s\nSDP:\n%s", g, w, answer)
	}
	waitHello()
	for _, pc := range []*webrtc.PeerConnection{offerer, answerer} {
		var ts *webrtc.TransportStats
		for _, s := range pc.GetStats() {
			if v, ok := s.(webrtc.TransportStats); ok {
				ts = &v
			}
		}
		if ts == nil {
			t.Fatal("no transport stats")
		}
		if ts.TLSVersion != "FEFC" || !strings.Contains(ts.DTLSCipher, "AES_128_GCM") {
			t.Errorf("DTLS version %s cipher %s, want FEFC (DTLS 1.3) with AES-128-GCM", ts.TLSVersion, ts.DTLSCipher)
		}
	}
}

// dtls12Profile is Chromium's hello as it was before DTLS 1.3: no TLS
// 1.3 suites, no key_share, supported_versions or psk_key_exchange_modes
// (the kind of hello upstream's covertdtls-fingerprint values hold).
func dtls12Profile() Profile {
	p := Chromium()
	p.Name = "dtls12"
	p.CipherSuites = slices.DeleteFunc(slices.Clone(p.CipherSuites), func(c uint16) bool { return c>>8 == 0x13 })
	p.Extensions = slices.DeleteFunc(slices.Clone(p.Extensions), func(e uint16) bool {
		return e == extKeyShare || e == extPSKModes || e == extSupportedVersion
	})
	p.KeyShareGroups, p.SupportedVersions, p.PSKModes = nil, nil, nil
	return p
}

// TestDTLS12ProfileConnects: a peer whose profile offers DTLS 1.2 only,
// as the DTLS client (the answerer), connects to a peer of this version,
// which supports DTLS 1.3 and so marks its DTLS 1.2 ServerHello with the
// RFC 8446 downgrade sentinel. pion, left to think it offered DTLS 1.3,
// rejects that hello ("downgrade sentinel in DTLS 1.2 ServerHello").
func TestDTLS12ProfileConnects(t *testing.T) {
	peer := func(p *Profile) *webrtc.PeerConnection {
		var se webrtc.SettingEngine
		se.SetIncludeLoopbackCandidate(true)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
		if err := Apply(&se, Mimic, p, nil); err != nil {
			t.Fatal(err)
		}
		pc, err := webrtcapi.NewFactory(se, ICECredentials(Mimic)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	p := dtls12Profile()
	offerer, answerer := peer(nil), peer(&p)
	_, waitHello := testenv.SendHello(t, offerer, answerer)
	waitHello()
}
