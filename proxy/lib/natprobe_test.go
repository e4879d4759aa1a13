//go:build !js

package proxy_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	probetest "github.com/snowflake-go/snowflake/probetest/lib"
	proxy "github.com/snowflake-go/snowflake/proxy/lib"
)

// serveSTUN answers Binding requests on a virtual-network socket until it
// is closed.
func serveSTUN(c net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if req.Decode() != nil || req.Type != stun.BindingRequest {
			continue
		}
		ua := from.(*net.UDPAddr)
		resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: ua.IP, Port: ua.Port}, stun.Fingerprint)
		if err == nil {
			c.WriteTo(resp.Raw, from)
		}
	}
}

var vnetMu sync.Mutex

func quiet() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelError
	return f
}

// natLAN puts a new host behind a NAT of the given type on wan.
func natLAN(t *testing.T, wan *vnet.Router, cidr, mapped string, typ vnet.NATType) *vnet.Net {
	t.Helper()
	lan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: cidr, StaticIPs: []string{mapped}, NATType: &typ, LoggerFactory: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	n, err := vnet.NewNet(&vnet.NetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := lan.AddNet(n); err != nil {
		t.Fatal(err)
	}
	if err := wan.AddRouter(lan); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNATProbe runs the probe service behind a symmetric NAT, as deployed,
// and a proxy behind a full-cone NAT (unrestricted) or a port-restricted
// cone NAT (restricted), and checks the type each proxy learns.
func TestNATProbe(t *testing.T) {
	symmetric := vnet.NATType{MappingBehavior: vnet.EndpointAddrPortDependent, FilteringBehavior: vnet.EndpointAddrPortDependent}
	for _, tc := range []struct {
		name     string
		proxyNAT vnet.NATType
		want     nat.Type
	}{
		{"full cone", vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent}, nat.Unrestricted},
		{"port restricted", vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}, nat.Restricted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// vnet numbers MAC addresses with an unguarded global counter,
			// so parallel subtests must build their networks in turn.
			vnetMu.Lock()
			wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "198.51.100.0/24", LoggerFactory: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			stunNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"198.51.100.3"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := wan.AddNet(stunNet); err != nil {
				t.Fatal(err)
			}
			probeNet := natLAN(t, wan, "10.1.0.0/24", "198.51.100.50", symmetric)
			proxyNet := natLAN(t, wan, "10.2.0.0/24", "198.51.100.60", tc.proxyNAT)
			err = wan.Start()
			vnetMu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			defer wan.Stop()
			sc, err := stunNet.ListenPacket("udp4", "198.51.100.3:3478")
			if err != nil {
				t.Fatal(err)
			}
			go serveSTUN(sc)
			defer sc.Close()
			stunURLs := []string{"stun:198.51.100.3:3478"}

			ps, err := probetest.New(probetest.Config{
				STUNURLs:        stunURLs,
				ConfigureWebRTC: func(se *webrtc.SettingEngine) { se.SetNet(probeNet) },
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ps.Close()
			probeSrv := httptest.NewServer(ps.Handler())
			defer probeSrv.Close()
			// The broker only says "no match"; the test is about the probe.
			broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := (&messages.ProxyPollResponse{Status: messages.StatusNoMatch}).Encode()
				w.Write(b)
			}))
			defer broker.Close()

			p, err := proxy.New(proxy.Config{
				BrokerURL:       broker.URL + "/",
				NATProbeURL:     probeSrv.URL + "/probe",
				STUNURLs:        stunURLs,
				ConcurrentPolls: 1,
				SkipRelayCheck:  true,
				ConfigureWebRTC: func(se *webrtc.SettingEngine) { se.SetNet(proxyNet) },
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			deadline := time.Now().Add(40 * time.Second)
			for p.NAT() == nat.Unknown && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
			if got := p.NAT(); got != tc.want {
				t.Fatalf("NAT type %q, want %q", got, tc.want)
			}
		})
	}
}

// TestProbeBadRequests: the probe service refuses what is not a client
// match with an offer.
func TestProbeBadRequests(t *testing.T) {
	ps, err := probetest.New(probetest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	srv := httptest.NewServer(ps.Handler())
	defer srv.Close()
	for _, body := range []string{
		"",
		"garbage",
		`{"Status":"no match","Offer":""}`,
		`{"Status":"client match","Offer":"not an envelope"}`,
		`{"Status":"client match","Offer":"{\"type\":\"answer\",\"sdp\":\"v=0\"}"}`,
		string(make([]byte, messages.MaxBodySize+1)),
	} {
		resp, err := http.Post(srv.URL+"/probe", "", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %.40q: status %d, want 400", body, resp.StatusCode)
		}
	}
	// An unparsable SDP inside a valid envelope is a WebRTC error.
	resp, err := http.Post(srv.URL+"/probe", "", strings.NewReader(`{"Status":"client match","Offer":"{\"type\":\"offer\",\"sdp\":\"v=0\"}"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("bad SDP: status %d, want 500", resp.StatusCode)
	}
}
