package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/rendezvous"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"443", "[443]", false},
		{"443, 8443,,50000", "[443 8443 50000]", false},
		{"", "", true},
		{"0", "", true},
		{"65536", "", true},
		{"http", "", true},
	}
	for _, tt := range tests {
		got, err := parsePorts(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && fmt.Sprint(got) != tt.want) {
			t.Errorf("parsePorts(%q) = %v, %v", tt.in, got, err)
		}
	}
}

// TestFingerprintCommand captures our rendezvous client's handshake with
// a local HTTPS server live, then decodes the saved file again with -r:
// both reports must show the Chromium 156 JA4 and the TLS 1.3 ServerHello,
// and be identical.
func TestFingerprintCommand(t *testing.T) {
	testenv.LookPath(t, "tshark")
	testenv.LookPath(t, "dumpcap")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "capturing on lo needs root")
	}
	bin := testenv.Binary(t, "./cmd/fingerprint")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	file := filepath.Join(t.TempDir(), "capture.pcapng")

	p := testenv.Start(t, "fingerprint", nil, bin, "-i", "lo", "-proto", "tcp", "-ports", fmt.Sprint(port), "-w", file, "-raw")
	p.WaitFor(t, "capturing on lo", 60*time.Second)

	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	rt, err := rendezvous.NewRoundTripper(rendezvous.TransportConfig{RootCAs: pool,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, srv.Listener.Addr().String())
		}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := rendezvous.NewHTTP(fmt.Sprintf("https://example.com:%d/", port), nil, rt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := h.Exchange(ctx, []byte(`{"offer":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	case <-time.After(60 * time.Second):
		t.Fatalf("fingerprint did not exit after SIGINT:\n%s", p.Output())
	}
	live := p.Output()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("tshark", "-n", "-r", file).CombinedOutput()
			t.Logf("capture file:\n%s", out)
		}
	})
	for _, want := range []string{
		"TLS ClientHello\n  JA4    t13d1517h2_8daaf6152771_cb7bf5808d99\n",
		"  JA4_r  t13d1517h2_002f,0035,",
		`sni="example.com"`,
		"TLS ServerHello\n  JA4S   t1302",
		"  server version=TLS1.3 cipher=",
	} {
		if !strings.Contains(live, want) {
			t.Errorf("live report lacks %q:\n%s", want, live)
		}
	}

	out, err := exec.Command(bin, "-r", file, "-raw").CombinedOutput()
	if err != nil {
		t.Fatalf("fingerprint -r: %v\n%s", err, out)
	}
	report := live[strings.Index(live, "\n")+1:] // drop the "capturing on" line
	if string(out) != report {
		t.Errorf("-r report differs from the live one:\n%s\nlive:\n%s", out, report)
	}
}
