package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// nsDialer dials from inside a test network namespace.
type nsDialer struct{ ns *testenv.Netns }

func (d nsDialer) Dial(network, addr string) (net.Conn, error) { return d.ns.Dial(network, addr) }

// TestUpstreamProxy: with TOR_PT_PROXY=socks5://..., all of the client's
// traffic goes through the proxy. The client runs in a network namespace
// of its own whose only way out is the test's SOCKS5 server: the server
// listens (and keeps its client-facing UDP relay sockets) inside the
// client's namespace and connects out from the chain's. A download that
// arrives intact therefore went through the proxy entirely — HTTP to the
// broker by CONNECT, STUN and WebRTC by UDP ASSOCIATE — and the server's
// counters show how much.
func TestUpstreamProxy(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	const size = 20 << 20
	c := startChain(t, size)
	c.startProxy("proxy1")
	c.waitProxies(1)

	ns := testenv.NewNetns(t)
	ln, err := ns.Listen("tcp", "127.0.0.1:1080")
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.ServeSOCKS5(t, ln, &testenv.SOCKS5Server{
		Username: "tor", Password: "pw;=x",
		ListenRelay: func(ip net.IP) (*net.UDPConn, error) {
			return ns.ListenUDP("udp", &net.UDPAddr{IP: ip})
		},
	})

	bin := testenv.Binary(t, "./client")
	// The STUN server by name: the proxy resolves it (the client's
	// namespace has no DNS, and must not need any).
	cargs := c.clientArgs("client")
	for i := range cargs {
		cargs[i] = strings.Replace(cargs[i], "stun:127.0.0.1:", "stun:localhost:", 1)
	}
	path, args := ns.Command(bin, cargs...)
	env := []string{"TOR_PT_MANAGED_TRANSPORT_VER=1", "TOR_PT_CLIENT_TRANSPORTS=snowflake",
		"TOR_PT_STATE_LOCATION=" + c.dir + "/client-state",
		"TOR_PT_PROXY=socks5://tor:pw%3B%3Dx@127.0.0.1:1080"}
	p := testenv.Start(t, "client", env, path, args...)
	p.WaitFor(t, "PROXY DONE", 30*time.Second)
	line := p.WaitFor(t, "CMETHOD snowflake socks5", 30*time.Second)
	f := strings.Fields(line)
	socksAddr := f[len(f)-1]

	d, err := proxy.SOCKS5("tcp", socksAddr, &proxy.Auth{User: "max=1", Password: "\x00"}, nsDialer{ns})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.Dial("tcp", "192.0.2.3:80")
	if err != nil {
		t.Fatalf("SOCKS connect to the client: %v\n%s", err, p.Output())
	}
	dur := c.download(conn, nil)
	// NAT discovery ran through the proxy against the named server.
	p.WaitFor(t, "NAT type discovered", 30*time.Second)
	t.Logf("%d MB through the upstream proxy in %v (%.1f MB/s)", size>>20, dur, float64(size)/1e6/dur.Seconds())
	t.Logf("SOCKS server: %d CONNECTs (%d bytes), %d UDP associations, %d datagrams (%d bytes), %d auth failures",
		srv.Connects.Load(), srv.TCPBytes.Load(), srv.Associations.Load(),
		srv.UDPPackets.Load(), srv.UDPBytes.Load(), srv.AuthFailures.Load())
	if srv.Connects.Load() == 0 || srv.TCPBytes.Load() == 0 {
		t.Error("no rendezvous traffic went through the SOCKS server")
	}
	if srv.Associations.Load() == 0 || srv.UDPBytes.Load() < size {
		t.Errorf("only %d UDP bytes went through the SOCKS server, want at least the %d downloaded",
			srv.UDPBytes.Load(), size)
	}
	if srv.AuthFailures.Load() != 0 {
		t.Error("the client's credentials were refused")
	}
}

// TestUpstreamProxyRefused: a proxy the client cannot use is reported to
// tor as PROXY-ERROR with the reason, and the client exits without sending
// anything elsewhere.
func TestUpstreamProxyRefused(t *testing.T) {
	bin := testenv.Binary(t, "./client")
	// A SOCKS5 server that refuses UDP ASSOCIATE.
	tcpOnly, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpOnly.Close()
	go func() {
		for {
			c, err := tcpOnly.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			c.Read(buf)
			c.Write([]byte{5, 0})
			c.Read(buf)
			c.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0}) // command not supported
			c.Close()
		}
	}()
	closed := testenv.FreePort(t)
	tests := []struct{ proxy, want string }{
		{"http://127.0.0.1:8080", "only socks5"},
		{"socks4a://127.0.0.1:1080", "only socks5"},
		{fmt.Sprintf("socks5://127.0.0.1:%d", closed), "connect to proxy"},
		{"socks5://" + tcpOnly.Addr().String(), "must support UDP ASSOCIATE"},
		{"socks5://127.0.0.1", "malformed TOR_PT_PROXY"},
	}
	for _, tc := range tests {
		env := []string{"TOR_PT_MANAGED_TRANSPORT_VER=1", "TOR_PT_CLIENT_TRANSPORTS=snowflake",
			"TOR_PT_STATE_LOCATION=" + t.TempDir(), "TOR_PT_PROXY=" + tc.proxy}
		p := testenv.Start(t, "client", env, bin, "-url", "http://127.0.0.1:9/")
		line := p.WaitFor(t, "PROXY-ERROR", 30*time.Second)
		if !strings.Contains(line, tc.want) {
			t.Errorf("%s: got %q, want a reason containing %q", tc.proxy, line, tc.want)
		}
		select {
		case <-p.Exited():
		case <-time.After(10 * time.Second):
			t.Errorf("%s: client still running after PROXY-ERROR", tc.proxy)
		}
		if strings.Contains(p.Output(), "CMETHOD snowflake") {
			t.Errorf("%s: client offered its transport anyway", tc.proxy)
		}
	}
}
