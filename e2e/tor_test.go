package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/snowflake-go/snowflake/bench/chain"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// torNode is one tor process of the private network.
type torNode struct {
	name    string
	dir     string // DataDirectory
	orPort  int
	dirPort int
	fp      string // relay identity fingerprint
	v3ident string // authority's v3 identity fingerprint (authorities only)
	proc    *chain.Proc
}

// TestTorNetwork runs a private Tor network in a namespace with only
// loopback: three directory authorities (also relays, one an exit), a
// bridge whose transport is our snowflake-server (managed, with the
// ExtORPort), our broker and proxy, and a tor client whose transport is our
// snowflake-client with a Tor Browser-style bridge line. The client must
// bootstrap to 100% and fetch a file from a local HTTP server through the
// exit, intact.
func TestTorNetwork(t *testing.T) {
	// These tests mostly wait (votes, polls, retries): let them overlap.
	t.Parallel()
	// Built before isolating, so that the child test process reuses them.
	bin := buildAll(t)
	if testenv.IsolateNetwork(t) {
		return
	}
	torBin := testenv.LookPath(t, "tor")
	gencert := testenv.LookPath(t, "tor-gencert")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// tor splits ClientTransportPlugin lines on spaces: the paths must have
	// none.
	for _, p := range []string{bin.server, bin.client} {
		if strings.ContainsAny(p, " \t") {
			t.Fatalf("binary path %q contains a space", p)
		}
	}
	base, err := os.MkdirTemp("", "snowflake-tornet-")
	if err != nil {
		t.Fatal(err)
	}
	// Removed also after a failure, when the log tails of every tor
	// (startTor) and of the transports (here) are shown: a kept directory
	// (keys, consensus, logs) piled up in /tmp with every failed run.
	t.Cleanup(func() {
		if t.Failed() {
			logFile(t, filepath.Join(base, "snowflake-client.log"))
			logFile(t, filepath.Join(base, "snowflake-server.log"))
		}
		os.RemoveAll(base)
	})

	// The file served through the exit.
	const fileSize = 8 << 20
	const seed = 77
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := httpLn.Addr().(*net.TCPAddr).Port
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/file" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(fileSize))
			chain.Pattern{Seed: seed}.WriteRange(r.Context(), w, 0, fileSize)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go hs.Serve(httpLn)
	t.Cleanup(func() { hs.Close() })

	resolv := filepath.Join(base, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Directory authorities: keys, certificates and fingerprints first,
	// because every torrc lists all of them.
	auths := make([]*torNode, 3)
	for i := range auths {
		n := &torNode{name: fmt.Sprintf("auth%d", i), orPort: testenv.FreePort(t), dirPort: testenv.FreePort(t)}
		n.dir = filepath.Join(base, n.name)
		if err := os.MkdirAll(filepath.Join(n.dir, "keys"), 0o700); err != nil {
			t.Fatal(err)
		}
		genAuthority(t, gencert, n)
		n.fp = listFingerprint(t, torBin, n)
		auths[i] = n
	}
	var dirAuthLines strings.Builder
	for _, a := range auths {
		fmt.Fprintf(&dirAuthLines, "DirAuthority %s orport=%d no-v2 v3ident=%s 127.0.0.1:%d %s\n",
			a.name, a.orPort, a.v3ident, a.dirPort, a.fp)
	}
	common := fmt.Sprintf(`TestingTorNetwork 1
UseDefaultFallbackDirs 0
%sLog notice stdout
SafeLogging 0
__OwningControllerProcess %d
`, dirAuthLines.String(), os.Getpid())
	exit := auths[0]
	for _, a := range auths {
		policy := "ExitRelay 0\nExitPolicy reject *:*\n"
		if a == exit {
			// Bridge clients use microdescriptors, whose policy summary only
			// counts "accept *:PORT" rules (see tor-private-network-notes).
			policy = fmt.Sprintf("ExitRelay 1\nExitPolicyRejectPrivate 0\nExitPolicyRejectLocalInterfaces 0\n"+
				"ExitPolicy accept 127.0.0.0/8:*\nExitPolicy accept *:%d\nExitPolicy reject *:*\n", httpPort)
		}
		torrc := common + fmt.Sprintf(`DataDirectory %s
Nickname %s
SocksPort 0
ORPort 127.0.0.1:%d
DirPort 127.0.0.1:%d
Address 127.0.0.1
AssumeReachable 1
ShutdownWaitLength 0
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
ContactInfo e2e@example.invalid
V3AuthVotingInterval 10
TestingV3AuthInitialVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
TestingDirAuthVoteExit %s
ServerDNSResolvConfFile %s
ServerDNSDetectHijacking 0
ServerDNSAllowBrokenConfig 1
%s`, a.dir, a.name, a.orPort, a.dirPort, exit.fp, resolv, policy)
		a.proc = startTor(t, torBin, base, a.name, torrc)
	}

	// The bridge: our server as a managed transport, with the ExtORPort.
	bridge := &torNode{name: "bridge", orPort: testenv.FreePort(t)}
	bridge.dir = filepath.Join(base, bridge.name)
	if err := os.MkdirAll(bridge.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	wsPort := testenv.FreePort(t)
	bridgeTorrc := func() string {
		return common + fmt.Sprintf(`DataDirectory %s
Nickname bridge
SocksPort 0
ORPort 127.0.0.1:%d
Address 127.0.0.1
AssumeReachable 1
ShutdownWaitLength 0
BridgeRelay 1
PublishServerDescriptor 0
BridgeDistribution none
ExitPolicy reject *:*
ExtORPort auto
ServerTransportPlugin snowflake exec %s -disable-tls -log %s
ServerTransportListenAddr snowflake 127.0.0.1:%d
`, bridge.dir, bridge.orPort, bin.server, filepath.Join(base, "snowflake-server.log"), wsPort)
	}
	bridge.fp = listFingerprint(t, torBin, bridge)

	// Wait for a consensus listing every authority and an exit before the
	// bridge and the client need it.
	waitConsensus(t, ctx, auths)
	bridge.proc = startTor(t, torBin, base, "bridge", bridgeTorrc())
	if _, err := bridge.proc.WaitFor(ctx, "Registered server transport 'snowflake'"); err != nil {
		t.Fatalf("bridge transport: %v\n%s", err, bridge.proc.Tail(40))
	}

	// Broker and proxy, with the bridge's real fingerprint in the list.
	c := startChain(t, ctx, bin, chain.Config{RelayURL: fmt.Sprintf("ws://127.0.0.1:%d/", wsPort), Fingerprint: bridge.fp})
	p, err := c.StartProxy(ctx, chain.ProxyConfig{Path: bin.proxy, Flavor: chain.Ours})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitProxies(ctx, 1); err != nil {
		t.Fatalf("%v\n%s", err, p.Tail(30))
	}

	// The client, with a Tor Browser-style bridge line.
	cdir := filepath.Join(base, "client")
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		t.Fatal(err)
	}
	socksPort := testenv.FreePort(t)
	clientTorrc := common + fmt.Sprintf(`DataDirectory %s
SocksPort 127.0.0.1:%d
UseBridges 1
ClientTransportPlugin snowflake exec %s -keep-local-addresses -log %s
Bridge snowflake 192.0.2.3:80 %s fingerprint=%s url=%s ice=%s
`, cdir, socksPort, bin.client, filepath.Join(base, "snowflake-client.log"),
		bridge.fp, bridge.fp, c.BrokerURL, c.STUN.URL())
	start := time.Now()
	client := startTor(t, torBin, base, "client", clientTorrc)
	if _, err := client.WaitFor(ctx, "Bootstrapped 100%"); err != nil {
		t.Fatalf("client bootstrap: %v\n%s\nbridge:\n%s", err, client.Tail(40), bridge.proc.Tail(40))
	}
	t.Logf("client bootstrapped in %v", time.Since(start).Round(time.Millisecond))
	if !p.Seen("client connected") {
		t.Errorf("the proxy never served a client, yet tor bootstrapped")
	}

	// Fetch the file through the exit.
	d, err := proxy.SOCKS5("tcp", fmt.Sprintf("127.0.0.1:%d", socksPort), nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.(proxy.ContextDialer).DialContext(ctx, network, addr)
		},
	}}
	fstart := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/file", httpPort), nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("fetch through tor: %v\n%s", err, client.Tail(30))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fetch through tor: %s", resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("fetch through tor after %d bytes: %v", n, err)
	}
	if n != fileSize {
		t.Fatalf("fetched %d bytes, want %d", n, fileSize)
	}
	checkSum(t, h.Sum(nil), seed, fileSize)
	el := time.Since(fstart)
	t.Logf("fetched %d bytes through tor and snowflake in %v (%.1f MB/s), SHA-256 ok",
		n, el.Round(time.Millisecond), float64(n)/1e6/el.Seconds())

	// Stop the client's tor before the network goes away, so that its PT
	// child is reaped while tor is alive.
	client.Stop(10 * time.Second)
	bridge.proc.Stop(10 * time.Second)
}

// genAuthority creates the authority identity and signing keys and the
// certificate, and reads the v3 identity fingerprint.
func genAuthority(t *testing.T, gencert string, n *torNode) {
	t.Helper()
	keys := filepath.Join(n.dir, "keys")
	cmd := exec.Command(gencert, "--create-identity-key", "-m", "12",
		"-a", fmt.Sprintf("127.0.0.1:%d", n.dirPort),
		"-i", filepath.Join(keys, "authority_identity_key"),
		"-s", filepath.Join(keys, "authority_signing_key"),
		"-c", filepath.Join(keys, "authority_certificate"),
		"--passphrase-fd", "0")
	cmd.Stdin = strings.NewReader("\n")
	cmd.Dir = n.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tor-gencert %s: %v\n%s", n.name, err, out)
	}
	cert, err := os.ReadFile(filepath.Join(keys, "authority_certificate"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(cert), "\n") {
		if f, ok := strings.CutPrefix(line, "fingerprint "); ok {
			n.v3ident = strings.TrimSpace(f)
		}
	}
	if len(n.v3ident) != 40 {
		t.Fatalf("%s: no v3 identity fingerprint in the certificate", n.name)
	}
}

// listFingerprint creates the relay keys of n and returns its fingerprint.
func listFingerprint(t *testing.T, torBin string, n *torNode) string {
	t.Helper()
	// tor refuses /dev/null as a configuration file; use an empty one.
	empty := filepath.Join(n.dir, "empty.torrc")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(torBin, "--list-fingerprint", "--quiet", "-f", empty, "--defaults-torrc", empty,
		"--DataDirectory", n.dir, "--ORPort", fmt.Sprintf("127.0.0.1:%d", n.orPort), "--Nickname", n.name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tor --list-fingerprint %s: %v\n%s", n.name, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 11 && f[0] == n.name {
			return strings.Join(f[1:], "")
		}
	}
	t.Fatalf("tor --list-fingerprint %s: no fingerprint in %q", n.name, out)
	return ""
}

// startTor writes a torrc and starts tor with it.
func startTor(t *testing.T, torBin, base, name, torrc string) *chain.Proc {
	t.Helper()
	path := filepath.Join(base, name+".torrc")
	if err := os.WriteFile(path, []byte(torrc), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(base, "empty.torrc")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := chain.StartProc(base, "tor-"+name, nil, torBin, "-f", path, "--defaults-torrc", empty)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("--- last lines of tor %s ---\n%s", name, p.Tail(40))
		}
	})
	return p
}

// waitConsensus waits until an authority's cached consensus lists every
// authority and one of them has the Exit flag.
func waitConsensus(t *testing.T, ctx context.Context, auths []*torNode) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		for _, a := range auths {
			select {
			case <-a.proc.Done():
				t.Fatalf("tor %s exited: %v\n%s", a.name, a.proc.Err(), a.proc.Tail(20))
			default:
			}
			f, err := os.Open(filepath.Join(a.dir, "cached-consensus"))
			if err != nil {
				continue
			}
			relays, exits := 0, 0
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "r ") {
					relays++
				}
				if strings.HasPrefix(line, "s ") && strings.Contains(line+" ", " Exit ") {
					exits++
				}
			}
			f.Close()
			if relays >= len(auths) && exits >= 1 {
				t.Logf("consensus with %d relays and %d exit after %v", relays, exits, time.Since(start).Round(time.Millisecond))
				return
			}
		}
		select {
		case <-ctx.Done():
			for _, a := range auths {
				t.Logf("--- %s ---\n%s", a.name, a.proc.Tail(30))
			}
			t.Fatalf("no consensus with %d relays and an exit: %v", len(auths), ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func logFile(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	t.Logf("--- %s ---\n%s", path, b)
}
