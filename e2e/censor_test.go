package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"
	"golang.org/x/sys/unix"

	"github.com/snowflake-go/snowflake/bench/chain"
	"github.com/snowflake-go/snowflake/internal/stunserver"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// Addresses of the censorship testbed. They exist only inside the network
// namespaces the test creates, which are joined to each other and to
// nothing else.
const (
	censorRouterToClient = "10.9.1.1" // router side of the censored link
	censorClientAddr     = "10.9.1.2" // the censored client
	censorBrokerAddr     = "10.9.2.1" // broker (router namespace)
	censorCDNAddr        = "10.9.4.1" // CDN front (nginx, router namespace)
	censorRouterToProxy  = "10.9.5.1"
	censorProxyAddr      = "10.9.5.2" // volunteer proxies
	censorRouterToBridge = "10.9.6.1"
	censorBridgeAddr     = "10.9.6.2" // bridge server
	censorSTUN1          = "10.9.7.1" // STUN (router namespace)
	censorSTUN2          = "10.9.7.2"
	censorSinkAddr       = "10.9.8.1" // stands for tor behind the bridge
	frontName            = "cdn.example"
	brokerName           = "broker.example"
)

// testbed is a set of named network namespaces linked to the test's own
// (isolated) namespace, which acts as the router.
type testbed struct {
	t      *testing.T
	ip     string
	nft    string
	prefix string
	dir    string        // logs and configuration files
	procs  []*chain.Proc // stopped, and their logs shown on failure, at cleanup
}

// start runs a program in namespace ns ("" is the router's, the test's
// own); the test's cleanup stops it.
func (tb *testbed) start(ns, name string, env []string, path string, args ...string) *chain.Proc {
	tb.t.Helper()
	cmd, full := path, args
	if ns != "" {
		cmd, full = tb.ip, append([]string{"netns", "exec", tb.ns(ns), path}, args...)
	}
	p, err := chain.StartProc(tb.dir, name, env, cmd, full...)
	if err != nil {
		tb.t.Fatal(err)
	}
	if len(tb.procs) == 0 {
		tb.t.Cleanup(func() {
			for _, p := range tb.procs {
				p.Stop(5 * time.Second)
				if tb.t.Failed() {
					tb.t.Logf("--- last lines of %s ---\n%s", p.Name, p.Tail(30))
				}
			}
		})
	}
	tb.procs = append(tb.procs, p)
	return p
}

func (tb *testbed) run(args ...string) string {
	tb.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (tb *testbed) ns(name string) string { return tb.prefix + name }

// newTestbed returns an empty testbed for t, which must run in a network
// namespace of its own (testenv.IsolateNetwork), after removing what dead
// runs left.
func newTestbed(t *testing.T) *testbed {
	tb := &testbed{t: t, ip: testenv.LookPath(t, "ip"), nft: testenv.LookPath(t, "nft"),
		prefix: fmt.Sprintf("sfc%d-", os.Getpid()), dir: t.TempDir()}
	tb.removeStale()
	return tb
}

// route makes the test's namespace a router between the testbed's links,
// with the given local addresses for the services it holds.
func (tb *testbed) route(local ...string) {
	tb.t.Helper()
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		tb.t.Fatalf("enable forwarding: %v", err)
	}
	for _, a := range local {
		tb.run(tb.ip, "addr", "add", a+"/32", "dev", "lo")
	}
}

// addNamespace creates namespace name linked to the router by a veth pair
// with the given addresses (/24), and a default route through the router.
func (tb *testbed) addNamespace(name, routerAddr, nsAddr string) {
	ns := tb.ns(name)
	tb.run(tb.ip, "netns", "add", ns)
	tb.t.Cleanup(func() {
		exec.Command(tb.ip, "netns", "delete", ns).Run()
		os.RemoveAll(filepath.Join("/etc/netns", ns))
	})
	outer, inner := "v"+name+"0", "v"+name+"1"
	tb.run(tb.ip, "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
	tb.run(tb.ip, "addr", "add", routerAddr+"/24", "dev", outer)
	tb.run(tb.ip, "link", "set", outer, "up")
	tb.run(tb.ip, "-n", ns, "link", "set", "lo", "up")
	tb.run(tb.ip, "-n", ns, "addr", "add", nsAddr+"/24", "dev", inner)
	tb.run(tb.ip, "-n", ns, "link", "set", inner, "up")
	tb.run(tb.ip, "-n", ns, "route", "add", "default", "via", routerAddr)
}

// startBroker starts our broker in the router namespace on addr, port 8000,
// with one bridge at relayURL, relays allowed on bridgeHost only, and
// proxies told to poll every 2 s. It returns the broker's URL.
func (tb *testbed) startBroker(ctx context.Context, bin binaries, addr, relayURL, bridgeHost string) string {
	tb.t.Helper()
	bl := filepath.Join(tb.dir, "bridges.json")
	os.WriteFile(bl, []byte(fmt.Sprintf(`{"displayName":"testbed","webSocketAddress":%q,"fingerprint":%q}`+"\n", relayURL, chain.BridgeFingerprint)), 0o644)
	pi := filepath.Join(tb.dir, "poll.json")
	os.WriteFile(pi, []byte(`{"unrestricted_poll_interval":2000,"restricted_poll_interval":2000}`), 0o644)
	broker := tb.start("", "broker", nil, bin.broker, "-addr", addr+":8000", "-disable-tls", "-bridge-list-path", bl,
		"-allowed-relay-pattern", bridgeHost+"$", "-disable-geoip", "-poll-interval-filepath", pi)
	if _, err := broker.WaitFor(ctx, "listening"); err != nil {
		tb.t.Fatal(err)
	}
	return "http://" + addr + ":8000/"
}

// clientEnv is the managed-transport environment of a client named name,
// with a state directory of its own.
func (tb *testbed) clientEnv(name string) []string {
	state := filepath.Join(tb.dir, name+"-state")
	os.MkdirAll(state, 0o700)
	return []string{"TOR_PT_MANAGED_TRANSPORT_VER=1", "TOR_PT_CLIENT_TRANSPORTS=snowflake",
		"TOR_PT_STATE_LOCATION=" + state, "TOR_PT_EXIT_ON_STDIN_CLOSE=1"}
}

// socks waits for the SOCKS listener of client p, running in namespace ns,
// and returns a dialer that reaches it from inside that namespace.
func (tb *testbed) socks(ctx context.Context, ns string, p *chain.Proc) *socksClient {
	tb.t.Helper()
	line, err := p.WaitFor(ctx, "CMETHOD snowflake socks5 ")
	if err != nil {
		tb.t.Fatal(err)
	}
	f := strings.Fields(line)
	return &socksClient{addr: f[len(f)-1], forward: &netnsDialer{path: filepath.Join("/run/netns", tb.ns(ns))}}
}

// removeStale deletes the namespaces (and their /etc/netns files) of
// earlier runs whose test process has died. Named namespaces live in the
// mount namespace, which the test shares with the host: a run killed at
// go test's timeout runs no cleanup, and its namespaces, veths and
// nftables tables would stay until reboot.
func (tb *testbed) removeStale() {
	var entries []os.DirEntry
	for _, dir := range []string{"/run/netns", "/etc/netns"} {
		es, _ := os.ReadDir(dir)
		entries = append(entries, es...)
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "sfc")
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its test is running (or the PID was reused: keep)
		}
		exec.Command(tb.ip, "netns", "delete", e.Name()).Run()
		os.RemoveAll(filepath.Join("/etc/netns", e.Name()))
	}
}

// nftCounter returns the packet count of the rule commented with name.
func (tb *testbed) nftCounter(ns, table, name string) int {
	tb.t.Helper()
	out := tb.run(tb.ip, "netns", "exec", ns, tb.nft, "list", "table", "inet", table)
	re := regexp.MustCompile(`counter packets (\d+) bytes \d+.*comment "` + regexp.QuoteMeta(name) + `"`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		tb.t.Fatalf("no counter %q in:\n%s", name, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestCensorship builds a censorship testbed: the client sits in a
// "censored" namespace whose firewall drops everything to the broker's and
// the bridge's addresses; a CDN address serves TLS for a front name and
// forwards by Host to the broker (nginx); proxies and the bridge live in
// namespaces of their own. It shows that direct rendezvous fails, fronted
// rendezvous succeeds, and the client's bytes reach the bridge only through
// the proxies.
func TestCensorship(t *testing.T) {
	// These tests mostly wait (votes, polls, retries): let them overlap.
	t.Parallel()
	bin := buildAll(t)
	if testenv.IsolateNetwork(t) {
		return
	}
	tb := newTestbed(t)
	dir := tb.dir
	nginx := testenv.LookPath(t, "nginx")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Router: this test's own namespace forwards between the links and
	// holds the broker, the CDN, STUN and the sink on local addresses.
	tb.route(censorBrokerAddr, censorCDNAddr, censorSTUN1, censorSTUN2, censorSinkAddr)
	tb.addNamespace("censored", censorRouterToClient, censorClientAddr)
	tb.addNamespace("volunteer", censorRouterToProxy, censorProxyAddr)
	tb.addNamespace("bridge", censorRouterToBridge, censorBridgeAddr)

	// The censor: drop everything from the client to the broker and the
	// bridge, counting what it drops.
	censorRules := filepath.Join(dir, "censor.nft")
	os.WriteFile(censorRules, []byte(fmt.Sprintf(`table inet censor {
	chain output {
		type filter hook output priority 0; policy accept;
		ip daddr %s counter drop comment "to-broker"
		ip daddr %s counter drop comment "to-bridge"
	}
}
`, censorBrokerAddr, censorBridgeAddr)), 0o644)
	tb.run(tb.ip, "netns", "exec", tb.ns("censored"), tb.nft, "-f", censorRules)
	// The bridge counts where its packets come from.
	bridgeRules := filepath.Join(dir, "bridge.nft")
	os.WriteFile(bridgeRules, []byte(fmt.Sprintf(`table inet watch {
	chain input {
		type filter hook input priority 0; policy accept;
		ip saddr %s counter comment "from-client"
		ip saddr %s counter comment "from-proxy"
	}
}
`, censorClientAddr, censorProxyAddr)), 0o644)
	tb.run(tb.ip, "netns", "exec", tb.ns("bridge"), tb.nft, "-f", bridgeRules)
	// The censored client resolves the front name to the CDN, and nothing
	// else (ip netns exec mounts /etc/netns/NAME/hosts over /etc/hosts).
	hostsDir := filepath.Join("/etc/netns", tb.ns("censored"))
	if err := os.MkdirAll(hostsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(hostsDir, "hosts"), []byte("127.0.0.1 localhost\n"+censorCDNAddr+" "+frontName+"\n"), 0o644)

	// STUN and the sink.
	stun, err := stunserver.Listen(censorSTUN1, censorSTUN2)
	if err != nil {
		t.Fatal(err)
	}
	defer stun.Close()
	sink, err := chain.StartSinkOn(censorSinkAddr + ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	// Bridge server, in its namespace.
	wsPort := 8080
	relayURL := fmt.Sprintf("ws://%s:%d/", censorBridgeAddr, wsPort)
	server := tb.start("bridge", "server", nil, bin.server, "-listen", fmt.Sprintf("%s:%d", censorBridgeAddr, wsPort),
		"-orport", sink.Addr(), "-disable-tls")
	if _, err := server.WaitFor(ctx, "listening"); err != nil {
		t.Fatal(err)
	}
	// Broker, in the router namespace.
	brokerURL := tb.startBroker(ctx, bin, censorBrokerAddr, relayURL, censorBridgeAddr)
	// The CDN: TLS for the front name, forwarding by Host to the broker.
	certFile, keyFile := testenv.WriteCert(t, dir, frontName)
	nginxConf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(nginxConf, []byte(fmt.Sprintf(`daemon off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log;
events { worker_connections 256; }
http {
	access_log %[1]s/nginx-access.log;
	client_body_temp_path %[1]s/nginx-body;
	proxy_temp_path %[1]s/nginx-proxy;
	fastcgi_temp_path %[1]s/nginx-fastcgi;
	uwsgi_temp_path %[1]s/nginx-uwsgi;
	scgi_temp_path %[1]s/nginx-scgi;
	ssl_certificate %[2]s;
	ssl_certificate_key %[3]s;
	server {
		listen %[4]s:443 ssl default_server;
		return 421;
	}
	server {
		listen %[4]s:443 ssl;
		server_name %[5]s;
		client_max_body_size 100k;
		location / {
			proxy_pass %[6]s;
			proxy_set_header Host $host;
			proxy_read_timeout 60s;
		}
	}
}
`, dir, certFile, keyFile, censorCDNAddr, brokerName, brokerURL)), 0o644)
	cdn := tb.start("", "nginx", nil, nginx, "-c", nginxConf, "-p", dir, "-e", filepath.Join(dir, "nginx-error.log"))
	waitTCP(t, ctx, censorCDNAddr+":443", cdn)

	// Two volunteer proxies, in their namespace.
	for i := range 2 {
		tb.start("volunteer", fmt.Sprintf("proxy-%d", i), nil, bin.proxy, "-broker", brokerURL, "-relay", relayURL,
			"-stun", stun.URL(), "-keep-local-addresses", "-allow-non-tls-relay",
			"-allowed-relay-hostname-pattern", censorBridgeAddr+"$", "-allow-proxying-to-private-addresses",
			"-nat-probe-server", "", "-summary-interval", "0s", "-poll-interval", "2s")
	}
	waitAvailable(t, ctx, brokerURL, 2)

	// 1. Direct rendezvous: the censor drops it.
	before := tb.nftCounter(tb.ns("censored"), "censor", "to-broker")
	direct := tb.start("censored", "client-direct", tb.clientEnv("direct"), bin.client,
		"-url", brokerURL, "-ice", stun.URL(), "-keep-local-addresses", "-log", "/dev/stderr")
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	_, err = chain.EchoOnce(dctx, tb.socks(ctx, "censored", direct))
	dcancel()
	if err == nil {
		t.Fatal("direct rendezvous succeeded through the censor")
	}
	dropped := tb.nftCounter(tb.ns("censored"), "censor", "to-broker") - before
	if dropped == 0 {
		t.Fatal("direct rendezvous failed, but not because the censor dropped it")
	}
	t.Logf("direct rendezvous failed as expected (%v); the censor dropped %d packets to the broker", err, dropped)
	direct.Stop(5 * time.Second)

	// 2. Fronted rendezvous through the CDN succeeds, and data flows.
	fronted := tb.start("censored", "client-fronted", append(tb.clientEnv("fronted"), "SSL_CERT_FILE="+certFile), bin.client,
		"-url", "https://"+brokerName+"/", "-front", frontName, "-ice", stun.URL(),
		"-keep-local-addresses", "-log", "/dev/stderr")
	fc := tb.socks(ctx, "censored", fronted)
	rv, err := chain.EchoOnce(ctx, fc)
	if err != nil {
		t.Fatalf("fronted rendezvous: %v", err)
	}
	t.Logf("fronted rendezvous and first round trip: %v", rv.Round(time.Millisecond))
	download(t, ctx, fc, 31, 4<<20)

	// 3. The bridge saw the proxies and never the client.
	if n := tb.nftCounter(tb.ns("bridge"), "watch", "from-client"); n != 0 {
		t.Errorf("the bridge received %d packets straight from the censored client", n)
	}
	if n := tb.nftCounter(tb.ns("bridge"), "watch", "from-proxy"); n == 0 {
		t.Error("the bridge received nothing from the proxies")
	} else {
		t.Logf("the bridge received %d packets from the proxies and none from the client", n)
	}
	if n := tb.nftCounter(tb.ns("censored"), "censor", "to-bridge"); n != 0 {
		t.Logf("the censor dropped %d packets to the bridge", n)
	}
}

// netnsDialer opens TCP connections from inside a network namespace: the
// socket is created on a thread that has joined the namespace, and keeps
// living there after the thread is gone.
type netnsDialer struct{ path string }

func (d *netnsDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d *netnsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread is never unlocked, so the runtime discards it when
		// this goroutine ends instead of reusing it in the wrong namespace.
		runtime.LockOSThread()
		f, err := os.Open(d.path)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		var nd net.Dialer
		c, err := nd.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// socksClient dials a SOCKS listener inside the censored namespace.
type socksClient struct {
	addr    string
	forward *netnsDialer
}

func (s *socksClient) Dial(ctx context.Context) (net.Conn, error) {
	d, err := proxy.SOCKS5("tcp", s.addr, nil, s.forward)
	if err != nil {
		return nil, err
	}
	return d.(proxy.ContextDialer).DialContext(ctx, "tcp", "192.0.2.3:80")
}

func waitTCP(t *testing.T, ctx context.Context, addr string, p *chain.Proc) {
	t.Helper()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never listened on %s\n%s", p.Name, addr, p.Tail(20))
		case <-p.Done():
			t.Fatalf("%s exited: %v\n%s", p.Name, p.Err(), p.Tail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitAvailable(t *testing.T, ctx context.Context, brokerURL string, n int) {
	t.Helper()
	for {
		m, err := chain.ScrapeMetrics(ctx, brokerURL+"prometheus")
		if err == nil && int(m.Sum("snowflake_available_proxies")) >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %d proxies at the broker: %v", n, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
