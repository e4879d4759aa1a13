// Command broker is a load generator for snowflake-broker. It runs in its own
// process and talks real HTTP/1.1 over loopback to a broker it starts (or to
// one given with -url), and measures:
//
//   - ramp: N simulated proxies connect and poll; the time until the
//     broker holds all N, and its RSS growth per waiting proxy;
//   - re-poll burst: when all N holds have expired (after 10 s), all N
//     poll again at the same moment over their kept-alive connections;
//     the time until the broker holds all N again gives the proxy polls/s
//     it admits with N waiting, and its CPU time the cost of one poll;
//   - match phase: clients poll while the N proxies keep polling and answer
//     each offer at once; client matches/s, proxy polls/s, and the p50/p99
//     latency of a matched client poll (broker work plus loopback round
//     trips, since the simulated proxies answer instantly).
//
// The simulated peers are cheap so that the generator leaves the CPU to the
// broker: each proxy is one goroutine and one connection, sending request
// bytes built once and parsing responses by hand.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
	"github.com/snowflake-go/snowflake/internal/childproc"
)

func main() {
	var (
		brokerBin = flag.String("broker-bin", "bin/snowflake-broker", "snowflake-broker binary to start (ignored with -url)")
		brokerURL = flag.String("url", "", "base URL of a running broker (default: start -broker-bin on loopback)")
		brokerPID = flag.Int("pid", 0, "PID of the broker given with -url, for RSS and CPU figures")
		proxies   = flag.Int("proxies", 20000, "number of simulated proxies kept polling")
		clients   = flag.Int("clients", 64, "concurrent simulated clients in the match phase")
		duration  = flag.Duration("duration", 10*time.Second, "length of the match phase")
		jsonOut   = flag.Bool("json", false, "print results as JSON")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, config{brokerBin: *brokerBin, url: *brokerURL, pid: *brokerPID,
		proxies: *proxies, clients: *clients, duration: *duration})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/broker:", err)
		os.Exit(1)
	}
	if *jsonOut {
		json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	res.print(os.Stdout)
}

type config struct {
	brokerBin, url   string
	pid              int
	proxies, clients int
	duration         time.Duration
}

// results are the measured figures. CPU figures are user+system seconds
// of the broker and of this generator.
type results struct {
	Proxies             int     `json:"proxies"`
	RampSeconds         float64 `json:"ramp_seconds"`
	RampPollsPerSecond  float64 `json:"ramp_polls_per_second"`
	RampBrokerCPU       float64 `json:"ramp_broker_cpu_seconds"`
	RampPolls           int64   `json:"ramp_polls"`
	BurstSeconds        float64 `json:"burst_seconds"`
	BurstPollsPerSecond float64 `json:"burst_polls_per_second"`
	BurstBrokerCPU      float64 `json:"burst_broker_cpu_seconds"`
	BurstGeneratorCPU   float64 `json:"burst_generator_cpu_seconds"`
	BrokerMicrosPerPoll float64 `json:"broker_cpu_us_per_poll"`
	RSSIdleKB           int64   `json:"rss_idle_kb"`
	RSSWaitingKB        int64   `json:"rss_waiting_kb"`
	RSSPerProxyBytes    float64 `json:"rss_per_waiting_proxy_bytes"`
	MatchSeconds        float64 `json:"match_seconds"`
	Matches             int64   `json:"matches"`
	MatchesPerSecond    float64 `json:"matches_per_second"`
	MatchProxyPolls     int64   `json:"match_proxy_polls"`
	ProxyPollsPerSecond float64 `json:"proxy_polls_per_second"`
	MatchBrokerCPU      float64 `json:"match_broker_cpu_seconds"`
	MatchGeneratorCPU   float64 `json:"match_generator_cpu_seconds"`
	Denied              int64   `json:"denied"`
	TimedOut            int64   `json:"timed_out"`
	Errors              int64   `json:"errors"`
	LastError           string  `json:"last_error,omitempty"`
	LatencyP50Millis    float64 `json:"latency_p50_ms"`
	LatencyP99Millis    float64 `json:"latency_p99_ms"`
	LatencyMaxMillis    float64 `json:"latency_max_ms"`
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "waiting proxies:             %d\n", r.Proxies)
	fmt.Fprintf(w, "ramp (connect, poll, held):  %.2f s = %.0f proxies held/s; %d polls, broker CPU %.1f µs per poll\n",
		r.RampSeconds, r.RampPollsPerSecond, r.RampPolls, 1e6*r.RampBrokerCPU/float64(max(r.RampPolls, 1)))
	fmt.Fprintf(w, "re-poll burst (all held):    %.2f s = %.0f proxy polls/s admitted\n", r.BurstSeconds, r.BurstPollsPerSecond)
	if r.BurstBrokerCPU > 0 {
		fmt.Fprintf(w, "  broker CPU in burst:       %.2f s = %.1f µs per poll (generator %.2f s)\n", r.BurstBrokerCPU, r.BrokerMicrosPerPoll, r.BurstGeneratorCPU)
	}
	if r.RSSWaitingKB > 0 {
		fmt.Fprintf(w, "broker RSS idle / waiting:   %d KB / %d KB = %.0f bytes per waiting proxy\n", r.RSSIdleKB, r.RSSWaitingKB, r.RSSPerProxyBytes)
	}
	fmt.Fprintf(w, "match phase:                 %.1f s, %d matches = %.0f matches/s\n", r.MatchSeconds, r.Matches, r.MatchesPerSecond)
	fmt.Fprintf(w, "proxy polls in match phase:  %.0f polls/s (held or matched)\n", r.ProxyPollsPerSecond)
	if r.MatchBrokerCPU > 0 {
		fmt.Fprintf(w, "  broker CPU in match phase: %.2f s = %.1f µs per match (generator %.2f s)\n",
			r.MatchBrokerCPU, 1e6*r.MatchBrokerCPU/float64(max(r.Matches, 1)), r.MatchGeneratorCPU)
	}
	fmt.Fprintf(w, "client poll latency:         p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", r.LatencyP50Millis, r.LatencyP99Millis, r.LatencyMaxMillis)
	fmt.Fprintf(w, "denied / timed out / errors: %d / %d / %d\n", r.Denied, r.TimedOut, r.Errors)
	if r.LastError != "" {
		fmt.Fprintf(w, "last error:                  %s\n", r.LastError)
	}
}

// raiseFileLimit raises the soft open-file limit to the hard limit
// (children, i.e. the broker, inherit it) and returns the soft limit.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return lim.Cur, nil
}

// startBroker runs the broker binary on a free loopback port.
func startBroker(bin string, maxConns int) (*exec.Cmd, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	// Not CommandContext: the broker is stopped with SIGTERM (see run), so
	// that it shuts down cleanly rather than being killed.
	cmd := exec.Command(bin, "-addr", addr, "-disable-tls", "-disable-geoip",
		"-allowed-relay-pattern", "snowflake.torproject.net$",
		"-max-connections", strconv.Itoa(maxConns), "-max-waiting-proxies", strconv.Itoa(maxConns))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := childproc.Start(cmd); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", bin, err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "listening") {
			go io.Copy(io.Discard, stderr)
			return cmd, "http://" + addr + "/", nil
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, "", errors.New("broker exited before listening")
}

// rssKB reads a process's resident set size.
func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// cpuSeconds reads a process's user+system CPU time from /proc.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// the 14th and 15th fields of the whole line.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	const clockTicks = 100 // USER_HZ on Linux
	return (ut + st) / clockTicks
}

// counters shared by the simulated peers.
type counters struct {
	proxyPolls atomic.Int64 // proxy poll responses received
	matches    atomic.Int64
	denied     atomic.Int64
	timedOut   atomic.Int64
	errors     atomic.Int64
	lastErr    atomic.Value // string: the latest error, for diagnosis
}

func (c *counters) fail(err error) {
	c.errors.Add(1)
	if err != nil {
		c.lastErr.Store(err.Error())
	}
}

const benchAnswer = `{"type":"answer","sdp":"v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"}`

// benchOffer is a realistic-size offer (~1 KB of SDP).
var benchOffer = func() string {
	sdp := "v=0\r\no=- 4627004392437563236 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=candidate:1 1 udp 2130706431 203.0.113.1 40000 typ host\r\n" +
		"a=ice-ufrag:abcdEFGHijklMNOP\r\na=ice-pwd:abcdefghijklmnopqrstuvwxyz012345\r\n" +
		"a=fingerprint:sha-256 " + strings.Repeat("AB:", 31) + "AB\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n"
	s, _ := messages.SessionDescription{Type: "offer", SDP: sdp + strings.Repeat("a=x-padding:0123456789\r\n", 20)}.Encode()
	return s
}()

// postBytes returns a complete HTTP/1.1 POST request.
func postBytes(host, path string, body []byte) []byte {
	req := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", path, host, len(body))
	return append(req, body...)
}

// errClosed reports that the broker closed the connection after a
// response (Connection: close), which a proxy must then redial.
var errClosed = errors.New("connection closed by broker")

// httpConn is one keep-alive HTTP/1.1 client connection.
type httpConn struct {
	conn net.Conn
	br   *bufio.Reader
	body []byte // reused response body buffer
}

// roundTrip writes a prepared request and reads the response status and
// body (valid until the next call). closed reports Connection: close.
func (h *httpConn) roundTrip(req []byte) (status int, body []byte, closed bool, err error) {
	if _, err := h.conn.Write(req); err != nil {
		return 0, nil, true, err
	}
	return h.readResponse()
}

// readResponse parses a response with a Content-Length (all the broker
// sends), without allocating per response.
func (h *httpConn) readResponse() (status int, body []byte, closed bool, err error) {
	line, err := h.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, true, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, true, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, true, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err = h.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, true, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil || length < 0 || length > messages.MaxBodySize {
				return 0, nil, true, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Connection")):
			closed = bytes.EqualFold(v, []byte("close"))
		}
	}
	if length < 0 {
		return 0, nil, true, errors.New("response without Content-Length")
	}
	if cap(h.body) < length {
		h.body = make([]byte, length)
	}
	h.body = h.body[:length]
	if _, err := io.ReadFull(h.br, h.body); err != nil {
		return 0, nil, true, err
	}
	return status, h.body, closed, nil
}

// simProxy is one simulated proxy: one connection, and its two requests
// built once (its Sid is reused for every poll; it has one poll at a time).
type simProxy struct {
	host     string
	poll     []byte
	answer   []byte
	hc       *httpConn
	stopConn func() bool
}

func newSimProxy(host string, id int) *simProxy {
	sid := "bench-" + strconv.Itoa(id)
	poll, _ := (&messages.ProxyPollRequest{Sid: sid, Type: "standalone", NAT: nat.Unrestricted,
		AcceptedRelayPattern: "snowflake.torproject.net$"}).Encode()
	ans, _ := (&messages.AnswerRequest{Sid: sid, Answer: benchAnswer}).Encode()
	return &simProxy{host: host, poll: postBytes(host, "/proxy", poll), answer: postBytes(host, "/answer", ans),
		stopConn: func() bool { return false }}
}

// dial opens the proxy's connection; ctx ending closes it.
func (p *simProxy) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", p.host)
	if err != nil {
		return err
	}
	p.stopConn()
	p.stopConn = context.AfterFunc(ctx, func() { conn.Close() })
	p.hc = &httpConn{conn: conn, br: bufio.NewReaderSize(conn, 1024)}
	return nil
}

func (p *simProxy) closeConn() {
	if p.hc != nil {
		p.hc.conn.Close()
		p.hc = nil
	}
}

// loop polls until ctx ends, answering every offer at once. Once ramped
// is closed, the next response it gets (its hold expiring) is reported on
// parked, and it waits for burst before polling again.
func (p *simProxy) loop(ctx context.Context, c *counters, ramped <-chan struct{}, parked *sync.WaitGroup, burst <-chan struct{}) {
	defer func() {
		p.stopConn()
		p.closeConn()
	}()
	waited := false
	for ctx.Err() == nil {
		if p.hc == nil {
			if err := p.dial(ctx); err != nil {
				c.fail(err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		status, body, closed, err := p.hc.roundTrip(p.poll)
		if err != nil || status != 200 {
			if ctx.Err() == nil {
				c.fail(fmt.Errorf("proxy poll: status %d: %v", status, err))
			}
			p.closeConn()
			continue
		}
		c.proxyPolls.Add(1)
		matched := bytes.Contains(body, []byte(`"Status":"client match"`))
		if closed {
			p.closeConn()
		}
		if !waited && isClosed(ramped) {
			waited = true
			parked.Done()
			select {
			case <-burst:
			case <-ctx.Done():
				return
			}
		}
		if !matched {
			continue
		}
		if p.hc == nil {
			if err := p.dial(ctx); err != nil {
				c.fail(err)
				continue
			}
		}
		status, body, closed, err = p.hc.roundTrip(p.answer)
		if err != nil || status != 200 || !bytes.Equal(body, []byte(`{"Status":"success"}`)) {
			if ctx.Err() == nil {
				c.fail(fmt.Errorf("answer: status %d %q: %v", status, body, err))
			}
			p.closeConn()
			continue
		}
		if closed {
			p.closeConn()
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitingProxies(ctx context.Context, base string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"debug", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	line, _, _ := strings.Cut(string(b), "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(line, "current snowflakes available: "))
	if err != nil {
		return 0, fmt.Errorf("unexpected /debug output %q", line)
	}
	return n, nil
}

// waitHeld waits until the broker holds n proxy polls.
func waitHeld(ctx context.Context, base string, n int, c *counters) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := waitingProxies(ctx, base)
		if err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d proxies held after 2 min (errors %d, last: %v)", got, n, c.errors.Load(), c.lastErr.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func run(ctx context.Context, cfg config) (*results, error) {
	// One descriptor per proxy here and in the broker (which inherits the
	// limit), plus clients and a few spares: the hard limit caps N.
	limit, err := raiseFileLimit()
	if err != nil {
		return nil, fmt.Errorf("open-file limit: %w", err)
	}
	const spare = 120
	if most := int(limit) - cfg.clients - spare; cfg.proxies > most {
		if most <= 0 {
			return nil, fmt.Errorf("open-file limit %d too low", limit)
		}
		fmt.Fprintf(os.Stderr, "bench/broker: open-file hard limit %d: using %d proxies\n", limit, most)
		cfg.proxies = most
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	base, pid := cfg.url, cfg.pid
	if base == "" {
		cmd, u, err := startBroker(cfg.brokerBin, cfg.proxies+cfg.clients+spare/4)
		if err != nil {
			return nil, err
		}
		defer func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}()
		base, pid = u, cmd.Process.Pid
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	host := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/")
	self := os.Getpid()
	res := &results{Proxies: cfg.proxies}
	time.Sleep(200 * time.Millisecond)
	res.RSSIdleKB = rssKB(pid)

	// Ramp: every proxy connects and polls (bounded concurrent dials:
	// thousands of simultaneous SYNs overflow the listen backlog and
	// measure only SYN retries).
	var c counters
	var wg sync.WaitGroup
	var parked sync.WaitGroup
	ramped, burst := make(chan struct{}), make(chan struct{})
	defer func() {
		cancel()
		wg.Wait()
	}()
	cpu0 := cpuSeconds(pid)
	rstart := time.Now()
	sem := make(chan struct{}, 128)
	for i := range cfg.proxies {
		p := newSimProxy(host, i)
		wg.Add(1)
		parked.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			err := p.dial(ctx)
			<-sem
			if err != nil {
				c.fail(err)
				parked.Done()
				return
			}
			p.loop(ctx, &c, ramped, &parked, burst)
		}()
	}
	if err := waitHeld(ctx, base, cfg.proxies, &c); err != nil {
		return nil, err
	}
	res.RampSeconds = time.Since(rstart).Seconds()
	res.RampPollsPerSecond = float64(cfg.proxies) / res.RampSeconds
	res.RampBrokerCPU = cpuSeconds(pid) - cpu0
	// Holds that expired during a long ramp were polled again: count
	// every poll the broker admitted.
	res.RampPolls = int64(cfg.proxies) + c.proxyPolls.Load()
	close(ramped)
	time.Sleep(time.Second) // let the broker settle (GC, scavenging)
	res.RSSWaitingKB = rssKB(pid)
	if res.RSSWaitingKB > 0 {
		res.RSSPerProxyBytes = float64(res.RSSWaitingKB-res.RSSIdleKB) * 1024 / float64(cfg.proxies)
	}

	// Burst: once every hold has expired (10 s), all proxies poll again
	// at the same moment over their kept-alive connections.
	waitDone := make(chan struct{})
	go func() { parked.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Errors so far (a proxy redials and goes on) are in the totals.
	time.Sleep(100 * time.Millisecond) // the last responses' connections back in keep-alive
	cpu0, gcpu0 := cpuSeconds(pid), cpuSeconds(self)
	bstart := time.Now()
	close(burst)
	if err := waitHeld(ctx, base, cfg.proxies, &c); err != nil {
		return nil, err
	}
	res.BurstSeconds = time.Since(bstart).Seconds()
	res.BurstPollsPerSecond = float64(cfg.proxies) / res.BurstSeconds
	res.BurstBrokerCPU, res.BurstGeneratorCPU = cpuSeconds(pid)-cpu0, cpuSeconds(self)-gcpu0
	res.BrokerMicrosPerPoll = 1e6 * res.BurstBrokerCPU / float64(cfg.proxies)

	// Match phase: clients poll as fast as matches allow, each on its own
	// keep-alive connection.
	pollBody, _ := (&messages.ClientPollRequest{Offer: benchOffer, NAT: nat.Unrestricted}).Encode()
	clientReq := postBytes(host, "/client", pollBody)
	var latMu sync.Mutex
	var lat []time.Duration
	pollsBefore := c.proxyPolls.Load()
	cpu1, gcpu1 := cpuSeconds(pid), cpuSeconds(self)
	mctx, mcancel := context.WithTimeout(ctx, cfg.duration)
	defer mcancel()
	var cwg sync.WaitGroup
	mstart := time.Now()
	for range cfg.clients {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			var mine []time.Duration
			defer func() {
				latMu.Lock()
				lat = append(lat, mine...)
				latMu.Unlock()
			}()
			var hc *httpConn
			defer func() {
				if hc != nil {
					hc.conn.Close()
				}
			}()
			for mctx.Err() == nil {
				if hc == nil {
					d := net.Dialer{Timeout: 10 * time.Second}
					conn, err := d.DialContext(mctx, "tcp", host)
					if err != nil {
						if mctx.Err() == nil {
							c.fail(err)
						}
						continue
					}
					hc = &httpConn{conn: conn, br: bufio.NewReaderSize(conn, 4096)}
				}
				t0 := time.Now()
				status, body, closed, err := hc.roundTrip(clientReq)
				d := time.Since(t0)
				if err != nil || status != 200 {
					c.fail(fmt.Errorf("client poll: status %d: %v", status, err))
					hc.conn.Close()
					hc = nil
					continue
				}
				r, err := messages.DecodeClientPollResponse(body)
				switch {
				case err != nil:
					c.fail(err)
				case r.Answer == benchAnswer:
					c.matches.Add(1)
					mine = append(mine, d)
				case r.Error == messages.ErrStrNoProxies:
					c.denied.Add(1)
				case r.Error == messages.ErrStrTimedOut:
					c.timedOut.Add(1)
				default:
					c.fail(fmt.Errorf("client poll: unexpected response %+v", r))
				}
				if closed {
					hc.conn.Close()
					hc = nil
				}
			}
		}()
	}
	cwg.Wait()
	mdur := time.Since(mstart)
	res.MatchBrokerCPU, res.MatchGeneratorCPU = cpuSeconds(pid)-cpu1, cpuSeconds(self)-gcpu1
	res.MatchProxyPolls = c.proxyPolls.Load() - pollsBefore
	res.MatchSeconds = mdur.Seconds()
	res.Matches = c.matches.Load()
	res.MatchesPerSecond = float64(res.Matches) / mdur.Seconds()
	res.ProxyPollsPerSecond = float64(res.MatchProxyPolls) / mdur.Seconds()
	res.Denied, res.TimedOut, res.Errors = c.denied.Load(), c.timedOut.Load(), c.errors.Load()
	if e, ok := c.lastErr.Load().(string); ok {
		res.LastError = e
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		res.LatencyP50Millis = ms(lat[len(lat)/2])
		res.LatencyP99Millis = ms(lat[len(lat)*99/100])
		res.LatencyMaxMillis = ms(lat[len(lat)-1])
	}
	return res, nil
}
