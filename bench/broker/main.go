// Command broker is a load generator for snowflake-broker. It runs in its own
// process and talks real HTTP over loopback to a broker it starts (or to one
// given with -url), and measures:
//
//   - proxy-poll admission rate: how fast N proxies get their polls held
//     (polls/s), and the broker's RSS per waiting proxy;
//   - match throughput and latency: clients poll while the N proxies keep
//     polling and answer each offer at once; client matches/s and the
//     p50/p99 latency of a matched client poll (all of it broker work plus
//     loopback round trips, since the simulated proxies answer instantly).
//
// Proxies use a minimal HTTP/1.1 client (one goroutine and one connection
// each, keep-alive) so that the load generator itself stays small.
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
)

func main() {
	var (
		brokerBin = flag.String("broker-bin", "bin/snowflake-broker", "snowflake-broker binary to start (ignored with -url)")
		brokerURL = flag.String("url", "", "base URL of a running broker (default: start -broker-bin on loopback)")
		brokerPID = flag.Int("pid", 0, "PID of the broker given with -url, for RSS figures")
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

// results are the measured figures.
type results struct {
	Proxies             int     `json:"proxies"`
	RampSeconds         float64 `json:"ramp_seconds"`
	RampPollsPerSecond  float64 `json:"ramp_polls_per_second"`
	RampBrokerCPU       float64 `json:"ramp_broker_cpu_seconds"`
	MatchBrokerCPU      float64 `json:"match_broker_cpu_seconds"`
	MatchProxyPolls     int64   `json:"match_proxy_polls"`
	RSSIdleKB           int64   `json:"rss_idle_kb"`
	RSSWaitingKB        int64   `json:"rss_waiting_kb"`
	RSSPerProxyBytes    float64 `json:"rss_per_waiting_proxy_bytes"`
	MatchSeconds        float64 `json:"match_seconds"`
	Matches             int64   `json:"matches"`
	MatchesPerSecond    float64 `json:"matches_per_second"`
	ProxyPollsPerSecond float64 `json:"proxy_polls_per_second"`
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
	fmt.Fprintf(w, "ramp (all polls held):       %.2f s = %.0f proxy polls/s admitted\n", r.RampSeconds, r.RampPollsPerSecond)
	if r.RampBrokerCPU > 0 {
		fmt.Fprintf(w, "  broker CPU in ramp:        %.2f s = %.0f polls per broker CPU-second\n", r.RampBrokerCPU, float64(r.Proxies)/r.RampBrokerCPU)
	}
	if r.RSSWaitingKB > 0 {
		fmt.Fprintf(w, "broker RSS idle / waiting:   %d KB / %d KB = %.0f bytes per waiting proxy\n", r.RSSIdleKB, r.RSSWaitingKB, r.RSSPerProxyBytes)
	}
	fmt.Fprintf(w, "match phase:                 %.1f s, %d matches = %.0f matches/s\n", r.MatchSeconds, r.Matches, r.MatchesPerSecond)
	fmt.Fprintf(w, "proxy polls in match phase:  %.0f polls/s (held or matched)\n", r.ProxyPollsPerSecond)
	if r.MatchBrokerCPU > 0 {
		fmt.Fprintf(w, "  broker CPU in match phase: %.2f s = %.0f matches and %.0f proxy polls per broker CPU-second\n",
			r.MatchBrokerCPU, float64(r.Matches)/r.MatchBrokerCPU, float64(r.MatchProxyPolls)/r.MatchBrokerCPU)
	}
	fmt.Fprintf(w, "client poll latency:         p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", r.LatencyP50Millis, r.LatencyP99Millis, r.LatencyMaxMillis)
	fmt.Fprintf(w, "denied / timed out / errors: %d / %d / %d\n", r.Denied, r.TimedOut, r.Errors)
	if r.LastError != "" {
		fmt.Fprintf(w, "last error:                  %s\n", r.LastError)
	}
}

// raiseFileLimit lets the broker and this process hold one descriptor per
// simulated proxy (children inherit the limit).
func raiseFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	want := syscall.Rlimit{Cur: n, Max: max(n, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("raise open-file limit to %d (have %d/%d): %w", n, lim.Cur, lim.Max, err)
	}
	return nil
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
	if err := cmd.Start(); err != nil {
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
	held       atomic.Int64 // proxy polls currently sent and unanswered
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

// proxy is one simulated proxy: a loop of polls on one keep-alive
// connection, answering every offer at once.
func proxyLoop(ctx context.Context, host string, id int, c *counters, dialSem chan struct{}) {
	var conn net.Conn
	var br *bufio.Reader
	// stopClose cancels the closing of conn at the end of ctx.
	stopClose := func() bool { return false }
	defer func() { stopClose() }()
	for ctx.Err() == nil {
		if conn == nil {
			d := net.Dialer{Timeout: 10 * time.Second}
			var err error
			// Bounded concurrent dials: thousands of simultaneous SYNs
			// overflow the listen backlog and measure only SYN retries.
			dialSem <- struct{}{}
			conn, err = d.DialContext(ctx, "tcp", host)
			<-dialSem
			if err != nil {
				c.fail(err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			br = bufio.NewReaderSize(conn, 2048)
			stopClose()
			cc := conn
			stopClose = context.AfterFunc(ctx, func() { cc.Close() })
		}
		sid := "bench-" + strconv.Itoa(id) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		body, _ := (&messages.ProxyPollRequest{Sid: sid, Type: "standalone", NAT: nat.Unrestricted,
			AcceptedRelayPattern: "snowflake.torproject.net$"}).Encode()
		c.held.Add(1)
		status, resp, closed, err := roundTrip(conn, br, host, "/proxy", body)
		c.held.Add(-1)
		if closed {
			conn.Close()
			conn = nil
		}
		if err != nil || status != 200 {
			c.fail(fmt.Errorf("proxy poll: status %d: %v", status, err))
			continue
		}
		c.proxyPolls.Add(1)
		r, err := messages.DecodeProxyPollResponse(resp)
		if err != nil {
			c.errors.Add(1)
			continue
		}
		if r.Status != messages.StatusClientMatch {
			continue
		}
		ans, _ := (&messages.AnswerRequest{Sid: sid, Answer: benchAnswer}).Encode()
		if conn == nil {
			// The poll's connection was closed: use a new one.
			if err := postOnce(ctx, host, "/answer", ans); err != nil {
				c.fail(err)
			}
			continue
		}
		status, _, closed, err = roundTrip(conn, br, host, "/answer", ans)
		if closed {
			conn.Close()
			conn = nil
		}
		if err != nil || status != 200 {
			c.fail(fmt.Errorf("answer: status %d: %v", status, err))
		}
	}
	if conn != nil {
		conn.Close()
	}
}

// roundTrip sends one POST on a keep-alive connection and reads the reply.
// It closes conn when the server asks to (the broker closes held proxy
// polls' connections after answering them).
func roundTrip(conn net.Conn, br *bufio.Reader, host, path string, body []byte) (int, []byte, bool, error) {
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", path, host, len(body))
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return 0, nil, true, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, nil, true, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, messages.MaxBodySize))
	resp.Body.Close()
	return resp.StatusCode, b, resp.Close || err != nil, err
}

// postOnce sends one POST on a fresh connection.
func postOnce(ctx context.Context, host, path string, body []byte) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	status, _, _, err := roundTrip(conn, bufio.NewReaderSize(conn, 1024), host, path, body)
	if err == nil && status != 200 {
		err = fmt.Errorf("%s: status %d", path, status)
	}
	return err
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

func run(ctx context.Context, cfg config) (*results, error) {
	// One descriptor per proxy here and in the broker, plus clients and
	// spares. Without privilege to raise the hard limit, fewer proxies.
	// The spare covers the answers' short-lived connections and re-dials.
	const spare = 1200
	if err := raiseFileLimit(uint64(cfg.proxies + cfg.clients + spare)); err != nil {
		var lim syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		limit := int(lim.Cur) - cfg.clients - spare
		if limit <= 0 {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "bench/broker: %v; using %d proxies\n", err, limit)
		cfg.proxies = limit
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	base, pid := cfg.url, cfg.pid
	if base == "" {
		cmd, u, err := startBroker(cfg.brokerBin, cfg.proxies+1000)
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
	res := &results{Proxies: cfg.proxies}
	time.Sleep(200 * time.Millisecond)
	res.RSSIdleKB = rssKB(pid)

	// Phase 1: ramp up to cfg.proxies held polls.
	var c counters
	var wg sync.WaitGroup
	cpu0 := cpuSeconds(pid)
	start := time.Now()
	dialSem := make(chan struct{}, 256)
	for i := range cfg.proxies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			proxyLoop(ctx, host, i, &c, dialSem)
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	for {
		n, err := waitingProxies(ctx, base)
		if err != nil {
			return nil, err
		}
		if n >= cfg.proxies {
			break
		}
		if time.Since(start) > 2*time.Minute {
			return nil, fmt.Errorf("only %d of %d proxies held after 2 min (errors %d, last: %v)", n, cfg.proxies, c.errors.Load(), c.lastErr.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ramp := time.Since(start)
	res.RampBrokerCPU = cpuSeconds(pid) - cpu0
	res.RampSeconds = ramp.Seconds()
	res.RampPollsPerSecond = float64(cfg.proxies) / ramp.Seconds()
	runtimeGCPause()
	res.RSSWaitingKB = rssKB(pid)
	if res.RSSWaitingKB > 0 {
		res.RSSPerProxyBytes = float64(res.RSSWaitingKB-res.RSSIdleKB) * 1024 / float64(cfg.proxies)
	}

	// Phase 2: clients poll as fast as matches allow.
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.clients, MaxConnsPerHost: cfg.clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	poll, _ := (&messages.ClientPollRequest{Offer: benchOffer, NAT: nat.Unrestricted}).Encode()
	var latMu sync.Mutex
	var lat []time.Duration
	pollsBefore := c.proxyPolls.Load()
	cpu1 := cpuSeconds(pid)
	mctx, mcancel := context.WithTimeout(ctx, cfg.duration)
	defer mcancel()
	var cwg sync.WaitGroup
	mstart := time.Now()
	for range cfg.clients {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			var mine []time.Duration
			for mctx.Err() == nil {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"client", bytes.NewReader(poll))
				resp, err := client.Do(req)
				if err != nil {
					c.errors.Add(1)
					continue
				}
				b, _ := io.ReadAll(io.LimitReader(resp.Body, messages.MaxBodySize))
				resp.Body.Close()
				d := time.Since(t0)
				r, err := messages.DecodeClientPollResponse(b)
				switch {
				case err != nil:
					c.errors.Add(1)
				case r.Answer != "":
					c.matches.Add(1)
					mine = append(mine, d)
				case r.Error == messages.ErrStrNoProxies:
					c.denied.Add(1)
				case r.Error == messages.ErrStrTimedOut:
					c.timedOut.Add(1)
				default:
					c.errors.Add(1)
				}
			}
			latMu.Lock()
			lat = append(lat, mine...)
			latMu.Unlock()
		}()
	}
	cwg.Wait()
	mdur := time.Since(mstart)
	res.MatchBrokerCPU = cpuSeconds(pid) - cpu1
	res.MatchProxyPolls = c.proxyPolls.Load() - pollsBefore
	res.MatchSeconds = mdur.Seconds()
	res.Matches = c.matches.Load()
	res.MatchesPerSecond = float64(res.Matches) / mdur.Seconds()
	res.ProxyPollsPerSecond = float64(c.proxyPolls.Load()-pollsBefore) / mdur.Seconds()
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

// runtimeGCPause gives the broker a moment to settle (GC, allocator
// scavenging) before its RSS is read.
func runtimeGCPause() { time.Sleep(time.Second) }
