package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/vnet"

	"github.com/snowflake-go/snowflake/common/messages"
)

// natTestNet is a virtual Internet: a STUN server on a public address and
// the client on a home LAN (192.168.1.0/24) behind a NAT whose public
// address is 198.51.100.100. Nothing leaves the process.
func natTestNet(t *testing.T) (clientNet *vnet.Net, stunURL string) {
	t.Helper()
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "198.51.100.0/24", LoggerFactory: quiet})
	if err != nil {
		t.Fatal(err)
	}
	stunNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"198.51.100.2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wan.AddNet(stunNet); err != nil {
		t.Fatal(err)
	}
	lan, err := vnet.NewRouter(&vnet.RouterConfig{
		CIDR:          "192.168.1.0/24",
		StaticIPs:     []string{"198.51.100.100"},
		NATType:       &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent},
		LoggerFactory: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := wan.AddRouter(lan); err != nil {
		t.Fatal(err)
	}
	clientNet, err = vnet.NewNet(&vnet.NetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := lan.AddNet(clientNet); err != nil {
		t.Fatal(err)
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wan.Stop() })

	conn, err := stunNet.ListenPacket("udp4", "198.51.100.2:3478")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go serveSTUN(conn)
	return clientNet, "stun:198.51.100.2:3478"
}

// serveSTUN answers binding requests with the mapped address, which is all
// ICE needs for a server-reflexive candidate.
func serveSTUN(conn net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if req.Decode() != nil || req.Type != stun.BindingRequest {
			continue
		}
		udp := from.(*net.UDPAddr)
		resp, err := stun.Build(req, stun.BindingSuccess,
			&stun.XORMappedAddress{IP: udp.IP, Port: udp.Port}, stun.Fingerprint)
		if err != nil {
			continue
		}
		conn.WriteTo(resp.Raw, from)
	}
}

// TestOfferBehindNAT checks what a client on a home LAN offers: its
// server-reflexive (public) candidate, and none of its LAN addresses unless
// keep-local-addresses is set. Filtering gathered addresses instead of the
// offer text would lose the server-reflexive candidate too.
func TestOfferBehindNAT(t *testing.T) {
	for _, keepLocal := range []bool{false, true} {
		name := "hide local"
		if keepLocal {
			name = "keep local"
		}
		t.Run(name, func(t *testing.T) {
			clientNet, stunURL := natTestNet(t)
			offers := make(chan string, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(io.LimitReader(r.Body, messages.MaxBodySize))
				if req, err := messages.DecodeClientPollRequest(body); err == nil {
					if d, err := messages.DecodeSessionDescription(req.Offer); err == nil {
						select {
						case offers <- d.SDP:
						default:
						}
					}
				}
				io.WriteString(w, `{"error":"no snowflake proxies currently available"}`)
			}))
			defer srv.Close()

			tr, err := newTransport(Config{BrokerURL: srv.URL + "/", ICEServers: []string{stunURL}, KeepLocalAddresses: keepLocal}, nil, clientNet)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var be *BrokerError
			if _, err := tr.newPeer(ctx); !errors.As(err, &be) {
				t.Fatalf("newPeer: %v, want the broker's error", err)
			}
			sdp := <-offers
			var srflx, lan bool
			for line := range strings.Lines(sdp) {
				if !strings.HasPrefix(line, "a=candidate:") {
					continue
				}
				if strings.Contains(line, " 198.51.100.100 ") && strings.Contains(line, "typ srflx") {
					srflx = true
				}
				if strings.Contains(line, "192.168.1.") {
					lan = true
				}
			}
			if !srflx {
				t.Errorf("offer has no server-reflexive candidate:\n%s", sdp)
			}
			if lan != keepLocal {
				t.Errorf("LAN address in offer = %v, want %v:\n%s", lan, keepLocal, sdp)
			}
		})
	}
}
