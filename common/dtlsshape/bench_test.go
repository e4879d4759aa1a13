//go:build !js

package dtlsshape

import (
	"syscall"
	"testing"
	"time"

	"github.com/pion/dtls/v4/pkg/protocol"
	"github.com/pion/dtls/v4/pkg/protocol/extension"
	"github.com/pion/dtls/v4/pkg/protocol/handshake"
)

// pionHello is a ClientHello as pion/dtls v4 builds it for WebRTC
// (without its key shares, which pion generates before the hook runs).
func pionHello(b *testing.B) handshake.MessageClientHello {
	var r handshake.Random
	if err := r.Populate(); err != nil {
		b.Fatal(err)
	}
	return handshake.MessageClientHello{
		Version:            protocol.Version1_2,
		Random:             r,
		CipherSuiteIDs:     []uint16{0xc02b, 0xc02f, 0xcca9, 0xcca8, 0xc00a, 0xc014, 0xc02c, 0xc030},
		CompressionMethods: []*protocol.CompressionMethod{{}},
		Extensions: []extension.Value{
			extension.Raw{Type: extension.TypeRenegotiationInfo, Data: []byte{0}},
			extension.Raw{Type: extension.TypeExtendedMasterSecret},
			extension.Raw{Type: extension.TypeSupportedVersions, Data: []byte{4, 0xfe, 0xfc, 0xfe, 0xfd}},
		},
	}
}

// BenchmarkMimicHello is the per-connection cost of the default shape's
// hook: rebuilding and encoding the hello.
func BenchmarkMimicHello(b *testing.B) {
	s := newShaper(Mimic, Chromium())
	for b.Loop() {
		m := s.clientHello(pionHello(b))
		if _, err := m.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCertificate(b *testing.B) {
	for b.Loop() {
		if _, err := Certificate(time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake is one whole DTLS handshake on loopback (with a
// message each way and the capture decoding of runHandshake): the
// default shape against a peer of this version (DTLS 1.3, X25519MLKEM768)
// and against a deployed one (DTLS 1.2 after a HelloVerifyRequest), and
// pion's own hello against a DTLS 1.2 peer, as before the move to
// pion/dtls v4.
func BenchmarkHandshake(b *testing.B) {
	for _, bc := range []struct {
		name string
		pc   func() peerConfig
	}{
		{"mimic-dtls13", func() peerConfig {
			pc := shaped(newShaper(Mimic, Chromium()))
			pc.serverSkipsHelloVerify, pc.serverHook = true, serverHello
			return pc
		}},
		{"mimic-dtls12-deployed", func() peerConfig {
			pc := shaped(newShaper(Mimic, Chromium()))
			pc.server12 = true
			return pc
		}},
		{"pion-dtls12", func() peerConfig {
			return peerConfig{server12: true, clientMax12: true}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// CPU time (both ends, this process) is steadier than wall
			// time on a shared machine.
			start := processCPU(b)
			for b.Loop() {
				runHandshake(b, bc.pc())
			}
			b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the user and system CPU time of this process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
