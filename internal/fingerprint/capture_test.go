package fingerprint

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/crypto/selfsign"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// startLoopbackCapture starts tshark on lo for one port, or skips the test
// when tshark or the privilege to capture is missing.
func startLoopbackCapture(t *testing.T, proto string, port int) *Capture {
	t.Helper()
	tshark := testenv.LookPath(t, "tshark")
	dumpcap := testenv.LookPath(t, "dumpcap")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "capturing on lo needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := StartCapture(ctx, CaptureConfig{Interface: "lo", Filter: PortFilter(proto, port), Tshark: tshark, Dumpcap: dumpcap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stopCapture waits until the capture file holds at least the first
// packets packets of the test's exchange, stops the capture and extracts
// the hellos.
func stopCapture(t *testing.T, c *Capture, packets int) []Hello {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitPackets(ctx, packets); err != nil {
		t.Fatal(err)
	}
	captured, err := c.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hellos, err := Extract(captured)
	if err != nil {
		t.Fatalf("extract: %v", err)
	}
	return hellos
}

// recordingListener keeps the first bytes each accepted connection sends,
// so the test can compare what tshark captured with what arrived.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	first [][]byte
}

type recordingConn struct {
	net.Conn
	l    *recordingListener
	buf  bytes.Buffer
	done bool
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, l: l}, nil
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.done {
		c.buf.Write(p[:n])
		var s StreamReassembler
		if msgs, _ := s.Add(c.buf.Bytes()); len(msgs) > 0 {
			c.done = true
			c.l.mu.Lock()
			c.l.first = append(c.l.first, msgs[0].Body)
			c.l.mu.Unlock()
		}
	}
	return n, err
}

// TestCaptureTLS captures a crypto/tls handshake on lo and checks that the
// ClientHello tshark saw is byte for byte the one the server received.
func TestCaptureTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &recordingListener{Listener: ln}
	cert := testenv.SelfSigned(t, "fingerprint.test")
	srv := tls.NewListener(rl, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	defer srv.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := srv.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	capture := startLoopbackCapture(t, "tcp", ln.Addr().(*net.TCPAddr).Port)
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool.AddCert(leaf)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "fingerprint.test", RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// The ServerHello is at most the sixth packet: after the TCP
	// handshake, the ClientHello and an acknowledgment of it.
	hellos := stopCapture(t, capture, 6)

	var client *ClientHello
	var server *ServerHello
	for _, h := range hellos {
		t.Log(h)
		if h.Client != nil {
			client = h.Client
		}
		if h.Server != nil {
			server = h.Server
		}
	}
	if client == nil || server == nil {
		t.Fatalf("captured %d hellos, want a ClientHello and a ServerHello", len(hellos))
	}
	rl.mu.Lock()
	received := rl.first
	rl.mu.Unlock()
	if len(received) != 1 {
		t.Fatalf("server saw %d hellos", len(received))
	}
	direct, err := ParseClientHello(received[0], false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(marshalClientHello(direct), marshalClientHello(client)) {
		t.Fatal("captured ClientHello differs from the one the server received")
	}
	if client.ServerName != "fingerprint.test" || client.JA4()[:4] != "t13d" || client.JA4() != direct.JA4() {
		t.Fatalf("ClientHello: %s (JA4 %s)", client, client.JA4())
	}
	if s := server.Summary(); s.Version != VersionTLS13 || server.ALPN != "" {
		// TLS 1.3 sends ALPN encrypted, so the ServerHello has none.
		t.Fatalf("ServerHello: %s", server)
	}
}

// TestCaptureDTLS captures a pion DTLS 1.2 handshake on lo: the
// ClientHello, the HelloVerifyRequest pion always sends, the second
// ClientHello with the cookie, and the ServerHello.
func TestCaptureDTLS(t *testing.T) {
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	capture := startLoopbackCapture(t, "udp", port)

	cc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// DTLS 1.2 on both ends: the exchange deployed peers run, with a
	// HelloVerifyRequest.
	server, err := dtls.Server(pc, cc.LocalAddr(), dtls.WithCertificates(cert), dtls.WithMaxVersion(protocol.Version1_2))
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client, err := dtls.Client(cc, pc.LocalAddr(), dtls.WithCertificates(cert), dtls.WithInsecureSkipVerify(true),
		dtls.WithMaxVersion(protocol.Version1_2))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	errc := make(chan error, 1)
	go func() { errc <- server.HandshakeContext(ctx) }()
	if err := client.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// ClientHello, HelloVerifyRequest, ClientHello, ServerHello.
	hellos := stopCapture(t, capture, 4)

	var clients []*ClientHello
	var verify *HelloVerifyRequest
	var serverHello *ServerHello
	for _, h := range hellos {
		t.Log(h)
		if !h.DTLS {
			t.Errorf("hello not marked DTLS")
		}
		switch {
		case h.Client != nil:
			clients = append(clients, h.Client)
		case h.Verify != nil:
			verify = h.Verify
		case h.Server != nil:
			serverHello = h.Server
		}
	}
	// Two ClientHellos, or more if pion resent one (it does after 1 s
	// without an answer, which a loaded machine can take).
	if len(clients) < 2 || verify == nil || serverHello == nil {
		t.Fatalf("got %d ClientHellos, HelloVerifyRequest %v, ServerHello %v", len(clients), verify, serverHello)
	}
	// The hellos without a cookie come first, then those that return the
	// HelloVerifyRequest's.
	first := 0
	for first < len(clients) && len(clients[first].Cookie) == 0 {
		first++
	}
	if first == 0 || first == len(clients) {
		t.Errorf("%d of %d ClientHellos without a cookie, want the first ones only", first, len(clients))
	}
	for i, c := range clients[first:] {
		if !bytes.Equal(c.Cookie, verify.Cookie) {
			t.Errorf("ClientHello %d: cookie %x, verify %x", first+i, c.Cookie, verify.Cookie)
		}
	}
	t.Logf("pion/dtls v4 client JA4 %s, server %s", clients[0].JA4(), serverHello.Summary())
	for i, c := range clients {
		if c.JA4() != clients[0].JA4() || c.JA4()[:4] != "dd2i" {
			t.Errorf("ClientHello %d: JA4 %s, first %s", i, c.JA4(), clients[0].JA4())
		}
	}
	if serverHello.SelectedVersion != VersionDTLS12 {
		t.Errorf("ServerHello: %s", serverHello)
	}
}

func TestStartCaptureErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := StartCapture(ctx, CaptureConfig{Interface: "lo"}); err == nil {
		t.Error("capture without a filter started")
	}
	if _, err := StartCapture(ctx, CaptureConfig{Filter: "udp"}); err == nil {
		t.Error("capture without an interface started")
	}
	if _, err := StartCapture(ctx, CaptureConfig{Interface: "lo", Filter: "udp", Dumpcap: "/nonexistent/dumpcap"}); err == nil ||
		!strings.Contains(err.Error(), "start dumpcap") {
		t.Errorf("missing dumpcap: %v", err)
	}
	dumpcap := testenv.LookPath(t, "dumpcap")
	_, err := StartCapture(ctx, CaptureConfig{Interface: "sfnoiface0", Filter: "udp", Dumpcap: dumpcap})
	if err == nil || !strings.Contains(err.Error(), "dumpcap exited") {
		t.Errorf("unknown interface: %v", err)
	}
	_, err = StartCapture(ctx, CaptureConfig{Interface: "lo", Filter: "not a ( filter", Dumpcap: dumpcap})
	if err == nil || !strings.Contains(err.Error(), "dumpcap exited") {
		t.Errorf("bad filter: %v", err)
	}
}

func TestPortFilter(t *testing.T) {
	tests := []struct {
		proto string
		ports []int
		want  string
	}{
		{"udp", []int{5000}, "udp and (port 5000)"},
		{"tcp", []int{443, 8443}, "tcp and (port 443 or port 8443)"},
		{"", []int{1, 2}, "(port 1 or port 2)"},
		{"udp", nil, "udp"},
	}
	for _, tt := range tests {
		if got := PortFilter(tt.proto, tt.ports...); got != tt.want {
			t.Errorf("PortFilter(%q, %v) = %q, want %q", tt.proto, tt.ports, got, tt.want)
		}
	}
}
