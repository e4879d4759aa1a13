package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/bench/chain"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// TestInteropMatrix moves 20 MB through every pairing of {our client,
// Debian's snowflake-client 2.5.1} with {our proxy, Debian's
// snowflake-proxy 2.5.1}, always through our broker and server, and a few
// MB in each of our other covertdtls-config modes. The Debian
// binaries fall back to public hosts, so the test runs in a network
// namespace that has only loopback. A subtest that passes a mode to our
// client or proxy also records the pairing's handshake on that loopback
// and requires the hellos (and certificates sent in the clear) of the
// real processes to show the mode (checkProxyMode, checkClientMode): a
// binary that ignored the flag would fail them.
func TestInteropMatrix(t *testing.T) {
	// These tests mostly wait (votes, polls, retries): let them overlap.
	t.Parallel()
	// Built before isolating, so that the child test process reuses them.
	bin := buildAll(t)
	if testenv.IsolateNetwork(t) {
		return
	}
	upClient := testenv.LookPath(t, "snowflake-client")
	upProxy := testenv.LookPath(t, "snowflake-proxy")
	dumpcap := testenv.LookPath(t, "dumpcap")
	tshark := testenv.LookPath(t, "tshark")
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Minute)
	defer cancel()
	// One server and broker for the whole matrix, started before any
	// proxy: the 2.5.1 proxy checks the relay only at start-up.
	c := startChain(t, ctx, bin, chain.Config{})

	type side struct {
		path   string
		flavor chain.Flavor
	}
	clients := []side{{bin.client, chain.Ours}, {upClient, chain.Upstream}}
	proxies := []side{{bin.proxy, chain.Ours}, {upProxy, chain.Upstream}}
	// Every DTLS shaping mode of ours must still complete handshakes with
	// the 2.5.1 binaries (pion/dtls v2) and with itself. The default mode
	// moves the full size; the others only need to prove the handshake
	// and a few megabytes.
	modes := []string{"mimic", "randomize", "randomizemimic", "disable"}
	const size, modeSize = 20 << 20, 1 << 20
	seed := uint64(1)
	for _, cs := range clients {
		for _, ps := range proxies {
			for i, mode := range modes {
				if cs.flavor == chain.Upstream && ps.flavor == chain.Upstream {
					if i > 0 {
						continue
					}
					mode = ""
				}
				// Our client is the DTLS server, where randomize and
				// randomizemimic shape nothing mimic does not (their
				// difference is the ClientHello): against the Debian
				// proxy, mimic and disable cover it.
				if cs.flavor == chain.Ours && ps.flavor == chain.Upstream && (mode == "randomize" || mode == "randomizemimic") {
					continue
				}
				seed++
				name := fmt.Sprintf("client=%s/proxy=%s", cs.flavor, ps.flavor)
				n := uint64(size)
				if mode != "" {
					name += "/covertdtls=" + mode
					if i > 0 {
						n = modeSize
					}
				}
				var clientArgs, proxyArgs []string
				if mode != "" && cs.flavor == chain.Ours {
					clientArgs = []string{"-covertdtls-config", mode}
				}
				if mode != "" && ps.flavor == chain.Ours {
					proxyArgs = []string{"-covertdtls-config", mode}
				}
				t.Run(name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
					defer cancel()
					var capture *handshakeCapture
					if clientArgs != nil || proxyArgs != nil {
						capture = startHandshakeCapture(t, ctx, dumpcap, tshark)
					}
					p, err := c.StartProxy(ctx, chain.ProxyConfig{Path: ps.path, Flavor: ps.flavor, Capacity: 1, Args: proxyArgs})
					if err != nil {
						t.Fatal(err)
					}
					// Only this pairing's proxy may serve the client.
					defer p.Stop(5 * time.Second)
					if err := c.WaitProxies(ctx, 1); err != nil {
						t.Fatalf("%v\n%s", err, p.Tail(30))
					}
					cl, err := c.StartClient(ctx, chain.ClientConfig{Path: cs.path, Flavor: cs.flavor, Args: clientArgs})
					if err != nil {
						t.Fatal(err)
					}
					defer cl.Stop(5 * time.Second)
					rv, err := chain.EchoOnce(ctx, cl)
					if err != nil {
						t.Fatalf("first round trip: %v\nclient:\n%s\nproxy:\n%s", err, cl.Tail(40), p.Tail(40))
					}
					t.Logf("rendezvous and first round trip: %v", rv.Round(time.Millisecond))
					if capture == nil {
						download(t, ctx, cl, seed, n)
						return
					}
					// The handshake is over: its hellos are decoded while
					// the download runs.
					hellos := capture.stopAsync(ctx)
					download(t, ctx, cl, seed, n)
					r := <-hellos
					if r.err != nil {
						t.Fatal(r.err)
					}
					t.Log(r.w)
					if proxyArgs != nil {
						checkProxyMode(t, mode, r.w)
					}
					if clientArgs != nil {
						checkClientMode(t, mode, r.w)
					}
				})
			}
		}
	}
}
