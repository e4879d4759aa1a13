package chain

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/proxy"

	"github.com/snowflake-go/snowflake/internal/freeport"
	"github.com/snowflake-go/snowflake/internal/stunserver"
)

// BridgeFingerprint is the fingerprint the broker's bridge list gives the
// loopback bridge: upstream's default bridge, so that clients that send no
// fingerprint (and Debian's 2.5.1 client, which sends the default) match.
const BridgeFingerprint = "2B280B23E1107BB62ABFC40DDCC8824814F80A72"

// Flavor says which implementation a binary is, because their flags differ.
type Flavor int

const (
	// Ours is this module's binary.
	Ours Flavor = iota
	// Upstream is Debian's snowflake-client / snowflake-proxy 2.5.1.
	Upstream
)

func (f Flavor) String() string {
	if f == Upstream {
		return "upstream-2.5.1"
	}
	return "ours"
}

// Config describes a chain.
type Config struct {
	Dir    string // working directory: logs, bridge list, client state
	Server string // snowflake-server binary
	Broker string // snowflake-broker binary

	// ServerArgs and BrokerArgs are appended to the defaults.
	ServerArgs, BrokerArgs []string
	// ServerMetrics, when set, serves the server's Prometheus metrics on a
	// free loopback port (see Chain.ServerMetricsURL).
	ServerMetrics bool
	// ORPort is where the server connects streams; empty starts a Sink.
	ORPort string
	// RelayURL, if set, names a bridge server started elsewhere (for
	// example by tor as a managed transport); no server or sink is started.
	RelayURL string
	// Fingerprint is the bridge's fingerprint in the broker's bridge list
	// (default BridgeFingerprint).
	Fingerprint string
}

// Chain is a running STUN server, sink, bridge server and broker, plus the
// proxies and clients added to it.
type Chain struct {
	cfg      Config
	STUN     *stunserver.Server
	Sink     *Sink // nil when Config.ORPort was given
	Server   *Proc
	Broker   *Proc
	ServerWS string // ws://127.0.0.1:S/
	// BrokerURL is http://127.0.0.1:B/.
	BrokerURL         string
	serverArgs        []string
	serverMetricsAddr string

	mu      sync.Mutex // guards procs and counter
	procs   []*Proc
	counter map[string]int
}

// Start starts the server and the broker (and the STUN server and sink) and
// waits until both are listening.
func Start(ctx context.Context, cfg Config) (_ *Chain, err error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	if cfg.Fingerprint == "" {
		cfg.Fingerprint = BridgeFingerprint
	}
	c := &Chain{cfg: cfg, counter: map[string]int{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.STUN, err = stunserver.Listen("127.0.0.1", "127.0.0.2"); err != nil {
		return nil, fmt.Errorf("chain: stun: %w", err)
	}
	if cfg.RelayURL != "" {
		c.ServerWS = cfg.RelayURL
		if err := c.startBroker(ctx); err != nil {
			return nil, err
		}
		return c, nil
	}
	orport := cfg.ORPort
	if orport == "" {
		if c.Sink, err = StartSink(); err != nil {
			return nil, err
		}
		orport = c.Sink.Addr()
	}
	sport, err := freeport.TCP()
	if err != nil {
		return nil, err
	}
	c.ServerWS = fmt.Sprintf("ws://127.0.0.1:%d/", sport)
	c.serverArgs = []string{"-listen", fmt.Sprintf("127.0.0.1:%d", sport), "-orport", orport, "-disable-tls"}
	if cfg.ServerMetrics {
		mport, err := freeport.TCP()
		if err != nil {
			return nil, err
		}
		c.serverMetricsAddr = fmt.Sprintf("127.0.0.1:%d", mport)
		c.serverArgs = append(c.serverArgs, "-metrics-addr", c.serverMetricsAddr)
	}
	c.serverArgs = append(c.serverArgs, cfg.ServerArgs...)
	if err := c.StartServer(ctx); err != nil {
		return nil, err
	}
	if err := c.startBroker(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Chain) startBroker(ctx context.Context) error {
	cfg := c.cfg
	bl := filepath.Join(cfg.Dir, "bridge-list.json")
	line := fmt.Sprintf(`{"displayName":"loopback","webSocketAddress":%q,"fingerprint":%q}`+"\n", c.ServerWS, cfg.Fingerprint)
	if err := os.WriteFile(bl, []byte(line), 0o644); err != nil {
		return fmt.Errorf("chain: bridge list: %w", err)
	}
	// The broker advises proxies to wait 20 s between polls that found no
	// client; on loopback that only slows tests and demos down.
	pi := filepath.Join(cfg.Dir, "poll-interval.json")
	if err := os.WriteFile(pi, []byte(`{"unrestricted_poll_interval":2000,"restricted_poll_interval":2000}`), 0o644); err != nil {
		return fmt.Errorf("chain: poll interval file: %w", err)
	}
	bport, err := freeport.TCP()
	if err != nil {
		return err
	}
	c.BrokerURL = fmt.Sprintf("http://127.0.0.1:%d/", bport)
	bargs := append([]string{"-addr", fmt.Sprintf("127.0.0.1:%d", bport), "-disable-tls",
		"-bridge-list-path", bl, "-allowed-relay-pattern", "127.0.0.1$", "-disable-geoip", "-poll-interval-filepath", pi}, cfg.BrokerArgs...)
	if c.Broker, err = c.start("broker", nil, cfg.Broker, bargs...); err != nil {
		return err
	}
	_, err = c.Broker.WaitFor(ctx, "listening")
	return err
}

// StartServer (re)starts the bridge server with the chain's arguments, for
// example after Server was killed.
func (c *Chain) StartServer(ctx context.Context) error {
	p, err := c.start("server", nil, c.cfg.Server, c.serverArgs...)
	if err != nil {
		return err
	}
	c.Server = p
	if _, err := p.WaitFor(ctx, "listening"); err != nil {
		return err
	}
	return nil
}

// ServerMetricsURL is the server's metrics URL (Config.ServerMetrics).
func (c *Chain) ServerMetricsURL() string {
	if c.serverMetricsAddr == "" {
		return ""
	}
	return "http://" + c.serverMetricsAddr + "/metrics"
}

// RestartBroker stops the broker and starts it again on the same address.
func (c *Chain) RestartBroker(ctx context.Context) error {
	args := c.Broker.cmd.Args[1:]
	c.Broker.Stop(5 * time.Second)
	p, err := c.start("broker", nil, c.cfg.Broker, args...)
	if err != nil {
		return err
	}
	c.Broker = p
	_, err = p.WaitFor(ctx, "listening")
	return err
}

// start runs a process named name-N (N counts restarts and instances).
func (c *Chain) start(name string, env []string, path string, args ...string) (*Proc, error) {
	c.mu.Lock()
	c.counter[name]++
	n := c.counter[name]
	c.mu.Unlock()
	full := name
	if n > 1 {
		full = fmt.Sprintf("%s-%d", name, n)
	}
	p, err := StartProc(c.cfg.Dir, full, env, path, args...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// ProxyConfig describes one proxy.
type ProxyConfig struct {
	Path     string
	Flavor   Flavor
	Capacity int // 0: unlimited
	Args     []string
}

// StartProxy starts a proxy against the chain's broker and relay.
func (c *Chain) StartProxy(ctx context.Context, pc ProxyConfig) (*Proc, error) {
	args := []string{"-broker", c.BrokerURL, "-relay", c.ServerWS, "-stun", c.STUN.URL(),
		"-keep-local-addresses", "-allow-non-tls-relay", "-allowed-relay-hostname-pattern", "127.0.0.1$"}
	if pc.Capacity > 0 {
		args = append(args, "-capacity", strconv.Itoa(pc.Capacity))
	}
	if pc.Flavor == Ours {
		// No NAT probe service on loopback: the proxy stays "unknown",
		// which the broker matches with the (unrestricted) clients.
		args = append(args, "-allow-proxying-to-private-addresses", "-nat-probe-server", "",
			"-summary-interval", "0s", "-poll-interval", "2s",
			"-geoipdb", "/nonexistent", "-geoip6db", "/nonexistent")
	}
	// The 2.5.1 proxy logs in a busy loop with -summary-interval 0s, so it
	// keeps its default.
	args = append(args, pc.Args...)
	return c.start("proxy", nil, pc.Path, args...)
}

// ClientConfig describes one client.
type ClientConfig struct {
	Path   string
	Flavor Flavor
	Args   []string
	Env    []string
}

// Client is a running client in managed PT mode, without tor.
type Client struct {
	*Proc
	SOCKS string // host:port of its SOCKS5 listener
}

// StartClient starts a client as a managed pluggable transport and waits for
// its SOCKS listener.
func (c *Chain) StartClient(ctx context.Context, cc ClientConfig) (*Client, error) {
	c.mu.Lock()
	n := c.counter["client"] + 1
	c.mu.Unlock()
	state := filepath.Join(c.cfg.Dir, fmt.Sprintf("client-%d-state", n))
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	env := append([]string{"TOR_PT_MANAGED_TRANSPORT_VER=1", "TOR_PT_CLIENT_TRANSPORTS=snowflake",
		"TOR_PT_STATE_LOCATION=" + state, "TOR_PT_EXIT_ON_STDIN_CLOSE=1"}, cc.Env...)
	args := append([]string{"-url", c.BrokerURL, "-ice", c.STUN.URL(), "-keep-local-addresses",
		"-log", "/dev/stderr"}, cc.Args...)
	p, err := c.start("client", env, cc.Path, args...)
	if err != nil {
		return nil, err
	}
	line, err := p.WaitFor(ctx, "CMETHOD snowflake socks5 ")
	if err != nil {
		return nil, err
	}
	f := strings.Fields(line)
	return &Client{Proc: p, SOCKS: f[len(f)-1]}, nil
}

// Dial opens a stream through the client: a SOCKS5 CONNECT whose target
// (a TEST-NET address) the client ignores, like tor's dummy bridge address.
func (cl *Client) Dial(ctx context.Context) (net.Conn, error) {
	return DialSOCKS(ctx, cl.SOCKS, nil)
}

// DialSOCKS connects through a SOCKS5 listener; auth carries PT arguments.
func DialSOCKS(ctx context.Context, socksAddr string, auth *proxy.Auth) (net.Conn, error) {
	d, err := proxy.SOCKS5("tcp", socksAddr, auth, &net.Dialer{})
	if err != nil {
		return nil, fmt.Errorf("chain: socks: %w", err)
	}
	conn, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", "192.0.2.3:80")
	if err != nil {
		return nil, fmt.Errorf("chain: socks connect: %w", err)
	}
	return conn, nil
}

// Procs returns every process started so far, including stopped ones.
func (c *Chain) Procs() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Proc(nil), c.procs...)
}

// WaitProxies waits until the broker holds at least n idle proxy polls.
func (c *Chain) WaitProxies(ctx context.Context, n int) error {
	for {
		got, err := c.AvailableProxies(ctx)
		if err == nil && got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chain: waiting for %d proxies at the broker (have %d, %v): %w", n, got, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// AvailableProxies returns how many proxies are waiting at the broker.
func (c *Chain) AvailableProxies(ctx context.Context) (int, error) {
	m, err := ScrapeMetrics(ctx, c.BrokerURL+"prometheus")
	if err != nil {
		return 0, err
	}
	return int(m.Sum("snowflake_available_proxies")), nil
}

// Close stops every process and the in-process servers. Idempotent.
func (c *Chain) Close() {
	procs := c.Procs()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop(5 * time.Second)
		}()
	}
	wg.Wait()
	if c.Sink != nil {
		c.Sink.Close()
	}
	if c.STUN != nil {
		c.STUN.Close()
	}
}

// Metrics is a parsed Prometheus text exposition: sample line (name and
// labels) to value.
type Metrics map[string]float64

// Sum adds the values of every sample of the metric name.
func (m Metrics) Sum(name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// ScrapeMetrics fetches and parses a Prometheus text endpoint.
func ScrapeMetrics(ctx context.Context, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("chain: metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("chain: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("chain: metrics: %s: %s", url, resp.Status)
	}
	return ParseMetrics(io.LimitReader(resp.Body, 8<<20))
}

// ParseMetrics parses the Prometheus text format (samples only).
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// "name{labels} value [timestamp]" or "name value [timestamp]".
		key, rest := line, ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			key, rest = line[:i+1], line[i+1:]
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			key, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("chain: metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("chain: metrics: bad value in %q: %w", line, err)
		}
		m[key] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("chain: metrics: %w", err)
	}
	return m, nil
}

// errNoServing is returned by ServingProxy when no proxy has a client.
var errNoServing = errors.New("chain: no proxy reported a connected client")

// ServingProxy returns the first proxy among procs whose output says it has a
// client connected (and not since disconnected).
func ServingProxy(procs []*Proc) (*Proc, error) {
	for _, p := range procs {
		tail := p.Tail(tailLines)
		c := strings.LastIndex(tail, "client connected")
		d := strings.LastIndex(tail, "client disconnected")
		if c >= 0 && c > d {
			return p, nil
		}
	}
	return nil, errNoServing
}

// StartOther starts another program as part of the chain (stopped by Close),
// for example a misbehaving proxy in a fault test.
func (c *Chain) StartOther(name, path string, args ...string) (*Proc, error) {
	return c.start(name, nil, path, args...)
}
