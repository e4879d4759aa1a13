package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/turbotunnel"
	"github.com/snowflake-go/snowflake/internal/testenv"
)

// The server benchmarks run the real snowflake-server binary (standalone
// mode) and drive it from this process with real turbotunnel clients over
// loopback WebSockets. Figures are for the server process alone: CPU time
// and RSS are read from /proc/<pid>.
//
//	go test -run '^$' -bench BenchmarkServer -benchtime 3x ./server/
//
// Each iteration uploads benchTotal bytes spread evenly over the sessions;
// the ORPort is a sink in this process.

const benchTotal = 64 << 20

// sinkOR is a plain ORPort that discards what it reads and counts it. For
// download benchmarks, every byte downloadCmd it reads makes it send
// downPer bytes back (upload data is all zeros, so never a command).
type sinkOR struct {
	ln      net.Listener
	bytes   atomic.Int64
	conns   atomic.Int64
	downPer atomic.Int64
}

const downloadCmd = 0xdd

func startSink(b testing.TB) *sinkOR {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &sinkOR{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go func() {
				defer c.Close()
				buf := make([]byte, 32*1024)
				down := make([]byte, 32*1024)
				for {
					n, err := c.Read(buf)
					s.bytes.Add(int64(n))
					if err != nil {
						return
					}
					for _, cmd := range buf[:n] {
						if cmd != downloadCmd {
							continue
						}
						for left := int(s.downPer.Load()); left > 0; {
							m, err := c.Write(down[:min(left, len(down))])
							if err != nil {
								return
							}
							left -= m
						}
					}
				}
			}()
		}
	}()
	b.Cleanup(func() { ln.Close() })
	return s
}

// procStats reads CPU seconds (user+system) and RSS bytes of a process.
func procStats(b testing.TB, pid int) (cpu float64, rss int64) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is parenthesised.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	cpu = (utime + stime) / 100 // USER_HZ is 100 on Linux
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			rss = kb * 1024
		}
	}
	return cpu, rss
}

type benchServer struct {
	p       *testenv.Process
	url     string
	metrics string // the /metrics URL
	sink    *sinkOR
}

func startBenchServer(b testing.TB, procs int) *benchServer {
	var env []string
	if procs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	return startBenchServerEnv(b, env)
}

// startBenchServerEnv starts a server, with env added to its environment,
// in front of a sink of its own.
func startBenchServerEnv(b testing.TB, env []string) *benchServer {
	sink := startSink(b)
	p, addr := startStandalone(b, env, sink.ln.Addr().String(), "-stats-interval", "0", "-metrics-addr", "127.0.0.1:0")
	return &benchServer{p: p, url: "ws://" + addr + "/", metrics: metricsURL(b, p), sink: sink}
}

// metricsURL returns the /metrics URL of a server started with
// -metrics-addr, from its log.
func metricsURL(tb testing.TB, p *testenv.Process) string {
	m := regexp.MustCompile(`metrics listening"? addr=(\S+)`).FindStringSubmatch(p.WaitFor(tb, "metrics listening", 10*time.Second))
	if m == nil {
		tb.Fatal("no metrics address logged")
	}
	return "http://" + m[1] + "/metrics"
}

// openSessions starts n client sessions with one stream each, and waits
// until the server has connected every stream to the ORPort.
func openSessions(b testing.TB, bs *benchServer, n int) ([]*turbotunnel.Session, []net.Conn) {
	return openSessionsOver(b, bs, n, func(d *testenv.CuttableDialer) turbotunnel.DialFunc { return d.Dial })
}

// openSessionsOver is openSessions with each session's transports dialled
// by what dial makes of a WebSocket dialer of its own.
func openSessionsOver(b testing.TB, bs *benchServer, n int, dial func(*testenv.CuttableDialer) turbotunnel.DialFunc) ([]*turbotunnel.Session, []net.Conn) {
	sessions := make([]*turbotunnel.Session, n)
	streams := make([]net.Conn, n)
	before := bs.sink.conns.Load()
	for i := range n {
		d := wsDialer(bs.url)
		sess, err := turbotunnel.DialSession(turbotunnel.NewRedialPacketConn(turbotunnel.NewClientID(), dial(d), nil))
		if err != nil {
			b.Fatal(err)
		}
		st, err := sess.OpenStream()
		if err != nil {
			b.Fatal(err)
		}
		// smux opens the stream at the server only when data flows.
		if _, err := st.Write([]byte{0}); err != nil {
			b.Fatal(err)
		}
		sessions[i], streams[i] = sess, st
	}
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for _, s := range sessions {
			wg.Add(1)
			go func() { defer wg.Done(); s.Close() }()
		}
		wg.Wait()
	})
	waitUntil(b, 5*time.Minute, func() bool { return bs.sink.conns.Load()-before >= int64(n) }, func() string {
		return fmt.Sprintf("only %d of %d streams reached the ORPort", bs.sink.conns.Load()-before, n)
	})
	return sessions, streams
}

func BenchmarkServerThroughput(b *testing.B) {
	for _, procs := range []int{1, 2} {
		for _, n := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("procs=%d/sessions=%d", procs, n), func(b *testing.B) {
				bs := startBenchServer(b, procs)
				_, streams := openSessions(b, bs, n)
				per := benchTotal / n
				chunk := make([]byte, 16*1024)
				b.SetBytes(benchTotal)
				cpu0, _ := procStats(b, bs.p.Cmd.Process.Pid)
				start := time.Now()
				b.ResetTimer()
				for b.Loop() {
					target := bs.sink.bytes.Load() + int64(per*n)
					var wg sync.WaitGroup
					for _, st := range streams {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for left := per; left > 0; {
								m := min(left, len(chunk))
								if _, err := st.Write(chunk[:m]); err != nil {
									b.Error(err)
									return
								}
								left -= m
							}
						}()
					}
					wg.Wait()
					for bs.sink.bytes.Load() < target {
						time.Sleep(time.Millisecond)
					}
				}
				b.StopTimer()
				elapsed := time.Since(start)
				cpu1, _ := procStats(b, bs.p.Cmd.Process.Pid)
				gb := float64(b.N) * benchTotal / 1e9
				b.ReportMetric((cpu1-cpu0)/gb, "server-cpu-s/GB")
				b.ReportMetric(float64(b.N)*benchTotal/1e6/elapsed.Seconds(), "agg-MB/s")
				// How many cores the server kept busy on average: above 1
				// means the shards really ran in parallel.
				b.ReportMetric((cpu1-cpu0)/elapsed.Seconds(), "server-cores")
			})
		}
	}
}

// BenchmarkServerDownload is BenchmarkServerThroughput in the direction
// Tor traffic mostly goes: from the ORPort to the clients.
func BenchmarkServerDownload(b *testing.B) {
	for _, procs := range []int{1, 2} {
		for _, n := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("procs=%d/sessions=%d", procs, n), func(b *testing.B) {
				bs := startBenchServer(b, procs)
				_, streams := openSessions(b, bs, n)
				per := benchTotal / n
				bs.sink.downPer.Store(int64(per))
				b.SetBytes(benchTotal)
				cpu0, _ := procStats(b, bs.p.Cmd.Process.Pid)
				start := time.Now()
				b.ResetTimer()
				for b.Loop() {
					var wg sync.WaitGroup
					for _, st := range streams {
						wg.Add(1)
						go func() {
							defer wg.Done()
							if _, err := st.Write([]byte{downloadCmd}); err != nil {
								b.Error(err)
								return
							}
							st.SetReadDeadline(time.Now().Add(5 * time.Minute))
							if _, err := io.CopyN(io.Discard, st, int64(per)); err != nil {
								b.Error(err)
							}
						}()
					}
					wg.Wait()
				}
				b.StopTimer()
				elapsed := time.Since(start)
				cpu1, _ := procStats(b, bs.p.Cmd.Process.Pid)
				gb := float64(b.N) * benchTotal / 1e9
				b.ReportMetric((cpu1-cpu0)/gb, "server-cpu-s/GB")
				b.ReportMetric(float64(b.N)*benchTotal/1e6/elapsed.Seconds(), "agg-MB/s")
				// How many cores the server kept busy on average: above 1
				// means the shards really ran in parallel.
				b.ReportMetric((cpu1-cpu0)/elapsed.Seconds(), "server-cores")
			})
		}
	}
}

// BenchmarkServerSlowPaths measures the server's CPU per byte of downloads
// that queue deeply, as behind slow proxies: 100 sessions, each behind a
// path that carries 250 KB/s towards its client, so that each holds its
// smux stream window (1 MiB, about 750 KCP segments) in flight over a
// round trip of seconds. Every KCP update walks what a session has in
// flight, so this is where the update interval shows (idle.go,
// busyInterval). It also reports the share of KCP segments retransmitted.
func BenchmarkServerSlowPaths(b *testing.B) {
	const n, rate, per = 100, 250e3, 2 << 20
	bs := startBenchServer(b, 0)
	_, streams := openSessionsOver(b, bs, n, func(d *testenv.CuttableDialer) turbotunnel.DialFunc {
		return func(ctx context.Context) (net.Conn, error) {
			c, err := d.Dial(ctx)
			if err != nil {
				return nil, err
			}
			return &slowConn{Conn: c, rate: rate}, nil
		}
	})
	bs.sink.downPer.Store(per)
	b.SetBytes(n * per)
	before := scrapeMetrics(b, bs.metrics)
	cpu0, _ := procStats(b, bs.p.Cmd.Process.Pid)
	start := time.Now()
	for b.Loop() {
		var wg sync.WaitGroup
		for _, st := range streams {
			wg.Go(func() {
				if _, err := st.Write([]byte{downloadCmd}); err != nil {
					b.Error(err)
					return
				}
				st.SetReadDeadline(time.Now().Add(5 * time.Minute))
				if _, err := io.CopyN(io.Discard, st, per); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	elapsed := time.Since(start)
	cpu1, _ := procStats(b, bs.p.Cmd.Process.Pid)
	after := scrapeMetrics(b, bs.metrics)
	gb := float64(b.N) * n * per / 1e9
	b.ReportMetric((cpu1-cpu0)/gb, "server-cpu-s/GB")
	b.ReportMetric(float64(b.N)*n*per/1e6/elapsed.Seconds(), "agg-MB/s")
	const segs = `snowflake_server_kcp_segments_total{kind="%s"}`
	if sent := after[fmt.Sprintf(segs, "sent")] - before[fmt.Sprintf(segs, "sent")]; sent > 0 {
		resent := after[fmt.Sprintf(segs, "retransmitted")] - before[fmt.Sprintf(segs, "retransmitted")]
		b.ReportMetric(resent/sent*100, "%retransmitted")
	}
}

// slowConn delivers what it reads at rate bytes a second at most, without
// saving up what it did not use while nothing arrived.
type slowConn struct {
	net.Conn
	rate float64
	next time.Time // when the next read may return
}

func (c *slowConn) Read(p []byte) (int, error) {
	// Small reads keep the delivery smooth.
	n, err := c.Conn.Read(p[:min(len(p), 4096)])
	if now := time.Now(); c.next.Before(now) {
		c.next = now
	}
	c.next = c.next.Add(time.Duration(float64(n) / c.rate * float64(time.Second)))
	time.Sleep(time.Until(c.next))
	return n, err
}

// BenchmarkServerIdleCPU measures the server's CPU use with 1000 open,
// idle sessions (one stream each, no traffic), in percent of one core: the
// cost of sessions that are connected but quiet, as most of a bridge's
// clients are at any moment.
func BenchmarkServerIdleCPU(b *testing.B) {
	const n = 1000
	for b.Loop() {
		bs := startBenchServer(b, 0)
		openSessions(b, bs, n)
		// Sessions go idle within a second of their last packet.
		reportQuietCPU(b, bs, n, 2*time.Second)
	}
}

// reportQuietCPU waits settle, then reports the server's CPU use over the
// next 10 s, in percent of one core and per session of n, and its RSS at
// the end. It stops the server afterwards, so that the next iteration's
// server runs alone.
func reportQuietCPU(b *testing.B, bs *benchServer, n int, settle time.Duration) {
	defer bs.p.Stop()
	const window = 10 * time.Second
	time.Sleep(settle)
	pid := bs.p.Cmd.Process.Pid
	cpu0, _ := procStats(b, pid)
	time.Sleep(window)
	cpu1, rss := procStats(b, pid)
	b.ReportMetric((cpu1-cpu0)/window.Seconds()*100, "server-%core")
	b.ReportMetric((cpu1-cpu0)/window.Seconds()/float64(n)*1e6, "server-us/s-per-session")
	b.ReportMetric(float64(rss)/1e6, "server-MB-rss")
}

// BenchmarkServerVanishedCPU measures the server's CPU use with 1000
// sessions whose clients vanished in the middle of a download, in percent
// of one core: the server holds data they never acknowledged until the
// sessions time out (minutes), as it does for every user who quits, or
// loses every proxy, while a page loads.
func BenchmarkServerVanishedCPU(b *testing.B) {
	const n, perSession = 1000, 64 << 10
	for b.Loop() {
		bs := startBenchServer(b, 0)
		bs.sink.downPer.Store(perSession)
		var gone atomic.Bool
		var dialers []*testenv.CuttableDialer
		_, streams := openSessionsOver(b, bs, n, func(d *testenv.CuttableDialer) turbotunnel.DialFunc {
			dialers = append(dialers, d)
			return deafDial(d, &gone, nil)
		})
		// The clients stop hearing before they ask, so that none
		// acknowledges any of the download; they leave once the sink has
		// every request.
		gone.Store(true)
		read0 := bs.sink.bytes.Load()
		for _, st := range streams {
			if _, err := st.Write([]byte{downloadCmd}); err != nil {
				b.Fatal(err)
			}
		}
		waitUntil(b, time.Minute, func() bool { return bs.sink.bytes.Load()-read0 >= n }, func() string {
			return fmt.Sprintf("the sink got %d of %d download requests", bs.sink.bytes.Load()-read0, n)
		})
		for _, d := range dialers {
			d.Cut()
		}
		// Sessions go quiet within a second or two of their last packet.
		reportQuietCPU(b, bs, n, 3*time.Second)
	}
}

// BenchmarkServerClientReturns measures how soon a client that vanished in
// the middle of a download gets the rest of it once it returns over a new
// transport (as after finding a new proxy): the seconds from its new
// WebSocket to the last byte of the download. The client vanishes with up
// to an smux stream window (1 MiB) sent to it and not acknowledged; while
// it is away the server keeps what it sent queued for it, and KCP's
// retransmissions, due ever less often, bring what is not.
func BenchmarkServerClientReturns(b *testing.B) {
	const download, heardBefore = 4 << 20, 1 << 20
	for _, away := range []time.Duration{5 * time.Second, 20 * time.Second} {
		b.Run(fmt.Sprintf("away=%v", away), func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				bs := startBenchServer(b, 0)
				bs.sink.downPer.Store(download)
				var gone atomic.Bool
				var back atomic.Int64 // when the first transport after the absence was dialled
				var dialer *testenv.CuttableDialer
				_, streams := openSessionsOver(b, bs, 1, func(d *testenv.CuttableDialer) turbotunnel.DialFunc {
					dialer = d
					return deafDial(d, &gone, func() { back.CompareAndSwap(0, time.Now().UnixNano()) })
				})
				st := streams[0]
				var heard atomic.Int64
				done := make(chan error, 1)
				go func() {
					st.SetReadDeadline(time.Now().Add(5 * time.Minute))
					buf := make([]byte, 32<<10)
					for heard.Load() < download {
						n, err := st.Read(buf)
						heard.Add(int64(n))
						if err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				if _, err := st.Write([]byte{downloadCmd}); err != nil {
					b.Fatal(err)
				}
				waitUntil(b, time.Minute, func() bool {
					select {
					case err := <-done:
						b.Fatalf("the download ended after %d bytes: %v", heard.Load(), err)
					default:
					}
					return heard.Load() >= heardBefore
				}, func() string {
					return fmt.Sprintf("the client heard %d bytes of %d before vanishing", heard.Load(), heardBefore)
				})
				gone.Store(true)
				dialer.Cut()
				time.Sleep(away)
				if heard.Load() >= download {
					b.Fatal("the client had the whole download before it vanished")
				}
				back.Store(0)
				gone.Store(false)
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				total += time.Since(time.Unix(0, back.Load()))
				bs.p.Stop()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s-to-finish")
		})
	}
}

// waitUntil polls cond every millisecond (a client that should vanish
// part-way through a download must not hear much more first) until it
// holds, and fails tb with what() if it does not within limit.
func waitUntil(tb testing.TB, limit time.Duration, cond func() bool, what func() string) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal(what())
		}
		time.Sleep(time.Millisecond)
	}
}

// deafDial dials a client's transports over d while gone is not set, and
// refuses while it is; the transports stop hearing once it is set (see
// deafConn). onDial, if not nil, runs after each transport is dialled.
func deafDial(d *testenv.CuttableDialer, gone *atomic.Bool, onDial func()) turbotunnel.DialFunc {
	return func(ctx context.Context) (net.Conn, error) {
		if gone.Load() {
			return nil, errors.New("client gone")
		}
		c, err := d.Dial(ctx)
		if err != nil {
			return nil, err
		}
		if onDial != nil {
			onDial()
		}
		return deafConn{c, gone}, nil
	}
}

// deafConn discards what it reads once gone is set: its client no longer
// acknowledges anything, as one that has vanished.
type deafConn struct {
	net.Conn
	gone *atomic.Bool
}

func (c deafConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil || !c.gone.Load() {
			return n, err
		}
	}
}

// BenchmarkServerIdleRSS measures the server's resident memory per idle
// session (one open stream, no traffic). It includes the KCP and smux state
// of each session, the WebSocket, the ORPort connection, goroutine stacks
// and the garbage collector's headroom; the Go runtime's own figures (from
// the server's /metrics) split it up.
//
// With the default GOGC=100 the heap may grow to twice the live data before
// a collection, so RSS is roughly twice the live heap plus stacks; the
// GOGC=25 case shows how close to the live size an operator can get by
// trading CPU for memory.
func BenchmarkServerIdleRSS(b *testing.B) {
	for _, gogc := range []string{"100", "25"} {
		b.Run("GOGC="+gogc, func(b *testing.B) { benchIdleRSS(b, []string{"GOGC=" + gogc}) })
	}
}

func benchIdleRSS(b *testing.B, env []string) {
	const n = 1000
	for b.Loop() {
		bs := startBenchServerEnv(b, env)
		p, metricsURL := bs.p, bs.metrics
		// Warm up the runtime and pools with a few sessions first.
		openSessions(b, bs, 10)
		time.Sleep(500 * time.Millisecond)
		_, rss0 := procStats(b, p.Cmd.Process.Pid)
		m0 := scrapeMetrics(b, metricsURL)
		openSessions(b, bs, n)
		time.Sleep(2 * time.Second)
		_, rss1 := procStats(b, p.Cmd.Process.Pid)
		m1 := scrapeMetrics(b, metricsURL)
		per := func(name string) float64 { return (m1[name] - m0[name]) / n }
		b.ReportMetric(float64(rss1-rss0)/n/1024, "KB-RSS/idle-session")
		b.ReportMetric(float64(rss1)/1e6, "MB-RSS-total")
		b.ReportMetric(per("go_goroutines"), "goroutines/session")
		b.ReportMetric(per("go_memstats_stack_inuse_bytes")/1024, "KB-stack/session")
		b.ReportMetric(per("go_memstats_heap_inuse_bytes")/1024, "KB-heap-inuse/session")
	}
}

// scrapeMetrics fetches unlabelled Prometheus samples.
func scrapeMetrics(b testing.TB, url string) map[string]float64 {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && !strings.HasPrefix(line, "#") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}
