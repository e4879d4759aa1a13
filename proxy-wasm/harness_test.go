//go:build !js

package main

// Test harness for the browser proxy: a loopback Snowflake network (STUN,
// bridge server, broker), a web server that hosts the built page and
// collects the status reports the page and the extension POST, headless
// Chromium, and a minimal DevTools-protocol client to click switches.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/internal/stunserver"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

const mb = 1 << 20

// webOut is the folder build.sh writes to: made before the tests run and
// removed (15 MB) after them.
var webOut string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "snowflake-wasm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	webOut = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildWeb runs build.sh once per test process and returns its output
// folder (holding page/ and extension/).
var buildWeb = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("sh", "build.sh", webOut).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build.sh: %v\n%s", err, out)
	}
	return webOut, nil
})

func webDir(t *testing.T) string {
	t.Helper()
	dir, err := buildWeb()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// source plays tor's ORPort: each connection gets size bytes of a seeded
// pseudo-random stream, then the connection stays open until the reader
// closes it.
type source struct {
	ln   net.Listener
	size int64
	want string // hex SHA-256 of what each connection receives
}

func stream() io.Reader { return rand.NewChaCha8([32]byte{'s', 'n', 'o', 'w'}) }

func startSource(t *testing.T, size int64) *source {
	t.Helper()
	s := &source{size: size}
	h := sha256.New()
	io.CopyN(h, stream(), size)
	s.want = hex.EncodeToString(h.Sum(nil))
	s.ln = testenv.ServeTCP(t, func(c net.Conn) {
		io.CopyN(c, stream(), size)
		io.Copy(io.Discard, c)
	})
	return s
}

// network is STUN, source, bridge server and broker on loopback.
type network struct {
	t         *testing.T
	dir       string
	stun      *stunserver.Server
	src       *source
	relay     string // ws://127.0.0.1:S/
	relayPort int
	brokerURL string // http://127.0.0.1:B/
}

func startNetwork(t *testing.T, size int64) *network {
	t.Helper()
	n := &network{t: t, dir: t.TempDir()}
	n.stun = testenv.STUN(t)
	n.src = startSource(t, size)

	n.relayPort = testenv.FreePort(t)
	n.relay = fmt.Sprintf("ws://127.0.0.1:%d/", n.relayPort)
	srv := testenv.Start(t, "server", nil, testenv.Binary(t, "./server"),
		"-listen", fmt.Sprintf("127.0.0.1:%d", n.relayPort), "-orport", n.src.ln.Addr().String(), "-disable-tls")
	srv.WaitFor(t, "listening", 60*time.Second)
	n.startBroker()
	return n
}

// startBroker starts our broker with one bridge, whose WebSocket address
// is n.relay.
func (n *network) startBroker() {
	t := n.t
	t.Helper()
	bridges := filepath.Join(n.dir, "bridges.json")
	line := fmt.Sprintf(`{"displayName":"loopback","webSocketAddress":%q,"fingerprint":%q}`+"\n",
		n.relay, messages.DefaultBridgeFingerprint)
	if err := os.WriteFile(bridges, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	bport := testenv.FreePort(t)
	n.brokerURL = fmt.Sprintf("http://127.0.0.1:%d/", bport)
	b := testenv.Start(t, "broker", nil, testenv.Binary(t, "./broker"),
		"-addr", fmt.Sprintf("127.0.0.1:%d", bport), "-disable-tls", "-bridge-list-path", bridges,
		"-allowed-relay-pattern", "127.0.0.1$", "-disable-geoip",
		// Chromium on a loaded two-core machine can take longer than
		// the default 5 s to answer; the test is about bytes, not speed.
		"-client-timeout", "15s")
	b.WaitFor(t, "listening", 60*time.Second)
}

// startClient starts a Snowflake client (ours or Debian's) as a managed
// PT and returns its SOCKS address.
func (n *network) startClient(name, bin string) (*testenv.Process, string) {
	n.t.Helper()
	env := []string{"TOR_PT_MANAGED_TRANSPORT_VER=1", "TOR_PT_CLIENT_TRANSPORTS=snowflake",
		"TOR_PT_STATE_LOCATION=" + filepath.Join(n.dir, name+"-state")}
	p := testenv.Start(n.t, name, env, bin, "-url", n.brokerURL, "-ice", n.stun.URL(),
		"-keep-local-addresses", "-log", filepath.Join(n.dir, name+".log"))
	f := strings.Fields(p.WaitFor(n.t, "CMETHOD snowflake socks5", 30*time.Second))
	n.t.Cleanup(func() {
		if n.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(n.dir, name+".log"))
			n.t.Logf("--- log of %s ---\n%s", name, b)
		}
	})
	return p, f[len(f)-1]
}

// clientLog returns the log file of the named client.
func (n *network) clientLog(name string) string {
	b, _ := os.ReadFile(filepath.Join(n.dir, name+".log"))
	return string(b)
}

// startNativeProxy starts our snowflake-proxy on the same network.
func (n *network) startNativeProxy() *testenv.Process {
	n.t.Helper()
	return testenv.Start(n.t, "native-proxy", nil, testenv.Binary(n.t, "./proxy"),
		"-broker", n.brokerURL, "-relay", n.relay, "-stun", n.stun.URL(),
		"-keep-local-addresses", "-allow-non-tls-relay", "-allow-proxying-to-private-addresses",
		"-allowed-relay-hostname-pattern", "127.0.0.1$", "-nat-probe-server", "",
		"-poll-interval", "2s", "-summary-interval", "0s")
}

// dial opens a stream through a client's SOCKS5 port (no authentication).
// The CONNECT target is ignored by Snowflake clients; it is a TEST-NET
// address that is never dialled. Clients answer the CONNECT only once a
// proxy is connected, so the deadline covers the rendezvous.
func dial(t *testing.T, socks string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", socks, 5*time.Second)
	if err != nil {
		t.Fatalf("SOCKS dial: %v", err)
	}
	c.SetDeadline(time.Now().Add(90 * time.Second))
	// Greeting and request go one at a time, as tor sends them: our
	// client (goptlib under it) drops a request that arrives together
	// with the greeting.
	var method [2]byte
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatalf("SOCKS greeting: %v", err)
	}
	if _, err := io.ReadFull(c, method[:]); err != nil || method != [2]byte{5, 0} {
		c.Close()
		t.Fatalf("SOCKS greeting via %s: % x %v", socks, method, err)
	}
	if _, err := c.Write([]byte{5, 1, 0, 1, 192, 0, 2, 1, 0x23, 0x29}); err != nil {
		t.Fatalf("SOCKS request: %v", err)
	}
	var resp [10]byte // reply with an IPv4 address
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		c.Close()
		t.Fatalf("SOCKS connect via %s: no reply: %v", socks, err)
	}
	if resp[0] != 5 || resp[1] != 0 {
		c.Close()
		t.Fatalf("SOCKS connect via %s: refused: % x", socks, resp)
	}
	c.SetDeadline(time.Time{})
	return c
}

// download reads one whole stream through conn, checks its SHA-256 and
// returns the throughput in MB/s (from the first byte on).
func (n *network) download(conn net.Conn) float64 {
	n.t.Helper()
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * time.Minute))
	br := bufio.NewReaderSize(conn, 64<<10)
	if _, err := br.Peek(1); err != nil {
		n.t.Fatalf("no data through the chain: %v", err)
	}
	start := time.Now()
	h := sha256.New()
	got, err := io.CopyN(h, br, n.src.size)
	if err != nil {
		n.t.Fatalf("after %d of %d bytes: %v", got, n.src.size, err)
	}
	d := time.Since(start)
	if sum := hex.EncodeToString(h.Sum(nil)); sum != n.src.want {
		n.t.Fatalf("SHA-256 mismatch: got %s, want %s", sum, n.src.want)
	}
	return float64(n.src.size) / d.Seconds() / 1e6
}

// relayConnections counts established TCP connections to the bridge
// server's port (from /proc/net/tcp of this network namespace). Only
// proxies connect there.
func (n *network) relayConnections() int {
	n.t.Helper()
	count := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "01" { // ESTABLISHED
				continue
			}
			// Remote address "HEXIP:HEXPORT": connections towards the server.
			_, port, ok := strings.Cut(fields[2], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(port, 16, 16); err == nil && int(p) == n.relayPort {
				count++
			}
		}
	}
	return count
}

// socketReport lists the TCP sockets of the namespace with their owners,
// to explain a connection that should have been closed.
func (n *network) socketReport() string {
	out, err := exec.Command("ss", "-tanp").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("ss: %v", err)
	}
	return fmt.Sprintf("relay port %d; sockets:\n%s", n.relayPort, out)
}

// status is the JSON the page and the extension report (see
// controller_js.go).
type status struct {
	State       string `json:"state"`
	Type        string `json:"type"`
	NAT         string `json:"nat"`
	Active      int64  `json:"active"`
	Connections int64  `json:"connections"`
	Polls       int64  `json:"polls"`
	BytesUp     int64  `json:"bytesUp"`
	BytesDown   int64  `json:"bytesDown"`
	Error       string `json:"error"`
}

// webServer hosts a built page, forwards /broker/ to the broker while
// counting proxy polls by type, and collects status reports.
type webServer struct {
	t   *testing.T
	url string // http://127.0.0.1:W/

	polls atomic.Int64
	mu    sync.Mutex
	types map[string]int // proxy type of each poll
	last  status
	seen  chan struct{} // signalled on each report

	// Polls in flight, when the latest came (UnixNano), and how many
	// the browser gave up on before the broker answered.
	pollsHeld, lastPoll, pollsAborted atomic.Int64
}

func startWebServer(t *testing.T, n *network, pageDir string) *webServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &webServer{t: t, url: "http://" + ln.Addr().String() + "/", types: map[string]int{},
		seen: make(chan struct{}, 1)}
	bu, _ := url.Parse(n.brokerURL)
	rp := httputil.NewSingleHostReverseProxy(bu)
	mux := http.NewServeMux()
	mux.HandleFunc("/broker/", func(rw http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(rw, r.Body, messages.MaxBodySize)
		if strings.HasSuffix(r.URL.Path, "/proxy") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(rw, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			if req, err := messages.DecodeProxyPollRequest(body); err == nil {
				w.polls.Add(1)
				w.lastPoll.Store(time.Now().UnixNano())
				w.pollsHeld.Add(1)
				defer w.pollsHeld.Add(-1)
				// net/http ends the request's context when the
				// browser closes the connection: an aborted fetch.
				defer func() {
					if r.Context().Err() != nil {
						w.pollsAborted.Add(1)
					}
				}()
				w.mu.Lock()
				w.types[req.Type]++
				w.mu.Unlock()
			}
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			r.ContentLength = int64(len(body))
		}
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/broker")
		rp.ServeHTTP(rw, r)
	})
	mux.HandleFunc("POST /report", func(rw http.ResponseWriter, r *http.Request) {
		// The extension's pages have another origin.
		rw.Header().Set("Access-Control-Allow-Origin", "*")
		var st status
		if err := json.NewDecoder(http.MaxBytesReader(rw, r.Body, 4096)).Decode(&st); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.last = st
		w.mu.Unlock()
		select {
		case w.seen <- struct{}{}:
		default:
		}
	})
	settings := w.settings(n)
	mux.HandleFunc("GET /settings.json", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		rw.Write(settings)
	})
	if pageDir != "" {
		mux.Handle("/", http.FileServer(http.Dir(pageDir)))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return w
}

// freshPoll returns once a poll that came less than maxAge ago is held at
// the broker, waiting for the next poll if need be.
func (w *webServer) freshPoll(maxAge time.Duration) {
	w.t.Helper()
	waitFor(w.t, fmt.Sprintf("a poll less than %v old held at the broker", maxAge), 30*time.Second, func() bool {
		return w.pollsHeld.Load() > 0 && time.Since(time.Unix(0, w.lastPoll.Load())) < maxAge
	})
}

// settings returns the browser proxy's settings for the loopback network.
func (w *webServer) settings(n *network) []byte {
	b, err := json.Marshal(map[string]any{
		"broker":              w.url + "broker/",
		"relay":               n.relay,
		"stun":                []string{n.stun.URL()},
		"natProbe":            "off",
		"relayPattern":        "127.0.0.1$",
		"allowNonTLSRelay":    true,
		"allowPrivateRelay":   true,
		"pollIntervalSeconds": 2,
		"reportURL":           w.url + "report",
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

// waitStatus waits until the latest report satisfies ok and returns it.
func (w *webServer) waitStatus(what string, timeout time.Duration, ok func(status) bool) status {
	w.t.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		st := w.last
		w.mu.Unlock()
		if ok(st) {
			return st
		}
		select {
		case <-w.seen:
		case <-deadline:
			w.t.Fatalf("no status report with %s within %v; last: %+v", what, timeout, st)
		}
	}
}

func (w *webServer) pollTypes() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[string]int{}
	for k, v := range w.types {
		m[k] = v
	}
	return m
}

// chromium is a headless Chromium with the DevTools protocol on a loopback
// port.
type chromium struct {
	t       *testing.T
	p       *testenv.Process
	devtool string // http://127.0.0.1:PORT
}

// startChromium launches Chromium (testenv.StartChromium) with the flags
// that let ICE complete on loopback, showing startURL. The page is opened
// as the browser's first, foreground tab: background tabs get their timers
// throttled to one a second, which stalls the Go scheduler in wasm.
func startChromium(t *testing.T, startURL string, extra ...string) *chromium {
	t.Helper()
	setupBrowserNetwork(t)
	args := append([]string{
		"--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--enable-logging=stderr",
	}, extra...)
	args = append(args, startURL)
	p, profile := testenv.StartChromium(t, args...)
	c := &chromium{t: t, p: p}
	// Chromium writes the DevTools port to the profile once it listens.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if err == nil {
			if port, _, ok := strings.Cut(string(b), "\n"); ok && port != "" {
				c.devtool = "http://127.0.0.1:" + port
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium did not open its DevTools port; output:\n%s", c.p.Output())
		}
		select {
		case <-c.p.Exited():
			t.Fatalf("chromium exited; output:\n%s", c.p.Output())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// browserNetwork is the address of a veth interface that the tests add to
// their private network namespace. Chromium gathers no ICE candidate at all
// when loopback is the only interface (--allow-loopback-in-peer-connection
// notwithstanding): it needs an interface that is up and holds the default
// route. Both ends of the veth pair stay inside the namespace, so nothing
// sent there can leave it; the address is from TEST-NET-1.
const browserNetwork = "192.0.2.1/24"

var browserNetworkOnce sync.Once

func setupBrowserNetwork(t *testing.T) {
	t.Helper()
	if !testenv.InIsolatedNetwork() {
		t.Fatal("Chromium must run inside testenv.IsolateNetwork")
	}
	var err error
	browserNetworkOnce.Do(func() {
		ip := testenv.LookPath(t, "ip")
		for _, args := range [][]string{
			{"link", "add", "sfveth0", "type", "veth", "peer", "name", "sfveth1"},
			{"addr", "add", browserNetwork, "dev", "sfveth0"},
			{"link", "set", "sfveth0", "up"},
			{"link", "set", "sfveth1", "up"},
			{"route", "add", "default", "dev", "sfveth0"},
		} {
			if out, e := exec.Command(ip, args...).CombinedOutput(); e != nil {
				err = fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), e, out)
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("browser network: %v", err)
	}
}

type target struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	WSURL string `json:"webSocketDebuggerUrl"`
}

// attach returns a DevTools session for the page whose URL starts with
// prefix, waiting for it to appear.
func (c *chromium) attach(prefix string) *cdpSession {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var seen []target
	for time.Now().Before(deadline) {
		seen = nil
		resp, err := http.Get(c.devtool + "/json/list")
		if err == nil {
			json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&seen)
			resp.Body.Close()
		}
		for _, tg := range seen {
			if tg.Type == "page" && strings.HasPrefix(tg.URL, prefix) && tg.WSURL != "" {
				return c.connect(tg.WSURL)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("devtools: no page %s; targets: %+v", prefix, seen)
	return nil
}

func (c *chromium) connect(wsURL string) *cdpSession {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		c.t.Fatalf("devtools: connect: %v", err)
	}
	ws.SetReadLimit(16 << 20)
	c.t.Cleanup(func() { ws.CloseNow() })
	return &cdpSession{t: c.t, ws: ws}
}

// cdpSession speaks the DevTools protocol to one page; only
// Runtime.evaluate is needed.
type cdpSession struct {
	t  *testing.T
	ws *websocket.Conn
	id int
}

// navigate loads url in the page.
func (s *cdpSession) navigate(url string) error {
	_, err := s.call("Page.navigate", map[string]any{"url": url})
	return err
}

// eval evaluates a JavaScript expression in the page and returns its value
// as JSON.
func (s *cdpSession) eval(expr string) (json.RawMessage, error) {
	return s.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
}

// call sends one DevTools command and returns the "value" of its result
// (set by Runtime.evaluate; empty for other commands).
func (s *cdpSession) call(method string, params map[string]any) (json.RawMessage, error) {
	s.id++
	req, _ := json.Marshal(map[string]any{"id": s.id, "method": method, "params": params})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.ws.Write(ctx, websocket.MessageText, req); err != nil {
		return nil, err
	}
	for {
		_, b, err := s.ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		var resp struct {
			ID     int `json:"id"`
			Result struct {
				Result struct {
					Value json.RawMessage `json:"value"`
				} `json:"result"`
				Exception *struct {
					Text string `json:"text"`
				} `json:"exceptionDetails"`
			} `json:"result"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(b, &resp); err != nil || resp.ID != s.id {
			continue // an event
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("devtools: %s", resp.Error.Message)
		}
		if resp.Result.Exception != nil {
			return nil, fmt.Errorf("javascript: %s", resp.Result.Exception.Text)
		}
		return resp.Result.Result.Value, nil
	}
}

// waitTrue evaluates expr until it yields true.
func (s *cdpSession) waitTrue(expr string, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		v, err := s.eval(expr)
		if err == nil && string(v) == "true" {
			return
		}
		last = fmt.Sprintf("%s %v", v, err)
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("%s never became true (last: %s)", expr, last)
}

// click clicks the element with the given id, as a user would.
func (s *cdpSession) click(id string) {
	s.t.Helper()
	if _, err := s.eval(fmt.Sprintf("document.getElementById(%q).click()", id)); err != nil {
		s.t.Fatalf("click #%s: %v", id, err)
	}
}

// extensionID is the ID Chromium gives an unpacked extension: the first
// 128 bits of the SHA-256 of its absolute path, hex digits mapped to a–p.
func extensionID(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	h := hex.EncodeToString(sum[:16])
	b := []byte(h)
	for i, c := range b {
		if c >= 'a' {
			b[i] = c - 'a' + 10 + 'a'
		} else {
			b[i] = c - '0' + 'a'
		}
	}
	return string(b)
}

// startPageProxy serves the web page proxy from web, opens it in Chromium
// and switches it on; it returns once the proxy has polled the broker. With
// record, the page's RTCPeerConnections are recorded first
// (recordPeerConnections), for their stats.
func startPageProxy(t *testing.T, n *network, web string, record bool) (*webServer, *cdpSession) {
	t.Helper()
	ws := startWebServer(t, n, filepath.Join(web, "page"))
	page := startChromium(t, ws.url+"index.html").attach(ws.url + "index.html")
	page.waitTrue(`document.getElementById("toggle").disabled === false`, 30*time.Second)
	if record {
		if _, err := page.eval(recordPeerConnections); err != nil {
			t.Fatalf("wrap RTCPeerConnection: %v", err)
		}
	}
	page.click("toggle")
	ws.waitStatus("state on", 20*time.Second, func(s status) bool { return s.State == "on" })
	waitPolls(t, ws, 1)
	return ws, page
}

// forceClassicWebSocket removes WebSocketStream from the page, as in
// browsers that lack it (Firefox, Safari), so that the proxy relays over
// the classic WebSocket. The proxy looks for it at each dial.
func forceClassicWebSocket(t *testing.T, page *cdpSession) {
	t.Helper()
	if _, err := page.eval(`delete window.WebSocketStream; typeof WebSocketStream === "undefined"`); err != nil {
		t.Fatalf("remove WebSocketStream: %v", err)
	}
}
