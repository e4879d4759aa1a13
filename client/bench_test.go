package main

import (
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestBenchChain measures our client side by side with Debian's
// snowflake-client 2.5.1 in one chain (our broker, proxy and server):
// time to the first echoed byte of a new session (rendezvous, ICE, DTLS,
// SCTP, KCP), round-trip time p50 through the tunnel, and single-stream
// bulk throughput with the client's CPU time per 100 MB. It checks the
// SHA-256 of every download. A third row runs our client through a SOCKS5
// upstream proxy (TOR_PT_PROXY) served by the test process. Set
// SNOWFLAKE_BENCH=1 to run it (=ours or =socks5 for one row); build
// without -race for meaningful figures:
//
//	SNOWFLAKE_BENCH=1 go test -run TestBenchChain -v ./client/
func TestBenchChain(t *testing.T) {
	if os.Getenv("SNOWFLAKE_BENCH") == "" {
		t.Skip("set SNOWFLAKE_BENCH=1 to run the side-by-side measurement")
	}
	if testenv.IsolateNetwork(t) {
		return
	}
	c := startChain(t, 100*mb)
	c.startProxy("proxy")
	c.waitProxies(1)
	// A SOCKS5 upstream proxy (TOR_PT_PROXY) for the third row: the
	// cost of relaying everything through it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstream := testenv.ServeSOCKS5(t, ln, &testenv.SOCKS5Server{})
	clients := []struct {
		name, bin string
		env       []string
	}{
		{"ours", testenv.Binary(t, "./client"), nil},
		{"debian-2.5.1", testenv.LookPath(t, "snowflake-client"), nil},
		{"ours+socks5", testenv.Binary(t, "./client"), []string{"TOR_PT_PROXY=socks5://" + upstream.Addr()}},
	}
	switch os.Getenv("SNOWFLAKE_BENCH") {
	case "ours":
		clients = clients[:1] // quick iterations on our client alone
	case "socks5":
		clients = clients[2:]
	}
	for _, cl := range clients {
		p, socks := c.startClientEnv(cl.name, cl.env, cl.bin, c.clientArgs(cl.name)...)
		c.waitProxies(1)

		// First echoed byte of a new session, then RTT samples.
		start := time.Now()
		conn := socksDial(t, socks, "")
		conn.Write([]byte{'E', 0})
		var b [1]byte
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			t.Fatalf("%s: echo: %v", cl.name, err)
		}
		first := time.Since(start)
		var rtts []time.Duration
		for range 200 {
			t0 := time.Now()
			conn.Write(b[:])
			if _, err := io.ReadFull(conn, b[:]); err != nil {
				t.Fatalf("%s: echo: %v", cl.name, err)
			}
			rtts = append(rtts, time.Since(t0))
		}
		conn.Close()
		slices.Sort(rtts)

		c.waitProxies(1)
		conn = socksDial(t, socks, "")
		cpu0 := cpuSeconds(t, p)
		d := c.download(conn, nil)
		cpu := cpuSeconds(t, p) - cpu0
		t.Logf("%-13s first byte %v  RTT p50 %v p90 %v  bulk %.1f MB/s  client CPU %.2f s per 100 MB",
			cl.name, first.Round(time.Millisecond), rtts[len(rtts)/2].Round(10*time.Microsecond),
			rtts[len(rtts)*9/10].Round(10*time.Microsecond), float64(c.src.size)/d.Seconds()/1e6,
			cpu*float64(100*mb)/float64(c.src.size))
		p.Stop()
	}
}
