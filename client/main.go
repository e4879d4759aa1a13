// Command snowflake-client is the Snowflake pluggable transport client. Tor
// runs it as a managed transport (ClientTransportPlugin snowflake exec ...);
// each SOCKS connection from tor becomes one Snowflake session, configured by
// the command line and, overriding it, the bridge line's arguments.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	pt "gitlab.torproject.org/tpo/anti-censorship/pluggable-transports/goptlib"

	client "github.com/snowflake-go/snowflake/client/lib"
	"github.com/snowflake-go/snowflake/common/procs"
	"github.com/snowflake-go/snowflake/common/rawsock"
	"github.com/snowflake-go/snowflake/common/scrub"
	"github.com/snowflake-go/snowflake/common/socksnet"
)

// version is reported by -version and to tor; set with -ldflags -X.
var version = "2.13.1-go"

const transportName = "snowflake"

func main() {
	fs := flag.NewFlagSet("snowflake-client", flag.ContinueOnError)
	var (
		logFile       = fs.String("log", "", "name of log file (appended; default: no log)")
		logToStateDir = fs.Bool("log-to-state-dir", false, "resolve the log file relative to tor's PT state dir")
		// Upstream still accepts the old spelling; torrc lines written
		// for it must not stop ours from starting.
		oldLogToStateDir = fs.Bool("logToStateDir", false, "deprecated spelling of -log-to-state-dir")
		unsafeLogging    = fs.Bool("unsafe-logging", false, "keep IP addresses in logs")
		showVersion      = fs.Bool("version", false, "display version info and quit")
	)
	// Every other setting comes from the client library's option table, so
	// flags and bridge-line arguments are parsed by the same code.
	set := map[string]string{}
	for _, o := range client.Options() {
		if !o.Flag {
			continue
		}
		name := o.Name
		if o.Bool {
			fs.BoolFunc(name, o.Usage, func(v string) error { set[name] = v; return nil })
		} else {
			fs.Func(name, o.Usage, func(v string) error { set[name] = v; return nil })
		}
	}
	for alias, name := range client.Aliases() {
		fs.BoolFunc(alias, "deprecated spelling of -"+name, func(v string) error { set[name] = v; return nil })
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		exitBadConfig(err)
	}
	if *showVersion {
		fmt.Printf("snowflake-client %s\n", version)
		return
	}
	var base client.Config
	if err := base.Apply(func(n string) (string, bool) { v, ok := set[n]; return v, ok }, false); err != nil {
		exitBadConfig(err)
	}

	logger, closeLog, err := setupLogging(*logFile, *logToStateDir || *oldLogToStateDir, *unsafeLogging)
	if err != nil {
		pt.Log(pt.LogSeverityError, err.Error())
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer closeLog()

	// pion allocates a buffer per received DTLS record; at tens of
	// thousands of records a second the collector is a large share of the
	// client's CPU. The live heap is a few MB, so trading memory for fewer
	// collections is cheap. An explicit GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	if err := run(base, logger); err != nil {
		logger.Error("exiting", "err", err)
		closeLog()
		os.Exit(1)
	}
}

// exitBadConfig ends a client whose command line is wrong. Tor shows a
// managed transport's LOG lines but not its stderr, so without the LOG
// line a torrc mistake would show only as an exit status, again at every
// restart.
func exitBadConfig(err error) {
	pt.Log(pt.LogSeverityError, "snowflake-client: bad command line: "+err.Error())
	fmt.Fprintln(os.Stderr, err)
	os.Exit(2)
}

func setupLogging(file string, toStateDir, unsafe bool) (*slog.Logger, func(), error) {
	var w io.Writer = io.Discard
	closeLog := func() {}
	if file != "" {
		if toStateDir {
			dir, err := pt.MakeStateDir()
			if err != nil {
				return nil, nil, fmt.Errorf("snowflake-client: state dir: %w", err)
			}
			file = filepath.Join(dir, file)
		}
		f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("snowflake-client: log file: %w", err)
		}
		w = f
		closeLog = func() { f.Close() }
	}
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
	// Notices and errors also go to tor as PT LOG lines, through the same
	// scrubbing as the file.
	logger := slog.New(scrub.NewHandler(&teeHandler{file: h, tor: &ptLogHandler{}}, unsafe))
	return logger, closeLog, nil
}

func run(base client.Config, logger *slog.Logger) error {
	ptInfo, err := pt.ClientSetup(nil)
	if err != nil {
		if len(ptInfo.MethodNames) > 0 && os.Getenv("TOR_PT_PROXY") != "" {
			// The transports parsed, so it is the proxy URL that did not.
			pt.ProxyError("malformed TOR_PT_PROXY: " + err.Error())
		}
		return fmt.Errorf("snowflake-client: %w", err)
	}
	pt.ReportVersion("snowflake-client", version)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var upstream *socksnet.Net
	if ptInfo.ProxyURL != nil {
		upstream, err = setupProxy(ctx, ptInfo.ProxyURL)
		if err != nil {
			// Without the proxy tor wants, nothing may be sent at all.
			pt.ProxyError(err.Error())
			return err
		}
		pt.ProxyDone()
		logger.Info("using the upstream SOCKS5 proxy for all traffic")
	}
	if os.Getenv("TOR_PT_EXIT_ON_STDIN_CLOSE") == "1" {
		// Tor closes our stdin when it exits; that is our cue to go.
		go func() {
			io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	var listeners []net.Listener
	var wg sync.WaitGroup
	if scaler := procs.New(logger); scaler != nil {
		// One P while that suffices: ~12% less CPU per byte (common/procs).
		wg.Add(1)
		go func() {
			defer wg.Done()
			scaler.Run(ctx)
		}()
	}
	for _, name := range ptInfo.MethodNames {
		if name != transportName {
			pt.CmethodError(name, "no such method")
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			pt.CmethodError(name, err.Error())
			continue
		}
		ln = rawsock.Listener(ln)
		pt.Cmethod(name, "socks5", ln.Addr())
		listeners = append(listeners, ln)
		wg.Add(1)
		go func() {
			defer wg.Done()
			acceptLoop(ctx, ln, base, upstream, logger)
		}()
	}
	pt.CmethodsDone()
	logger.Info("snowflake-client started", "version", version)
	<-ctx.Done()
	// A second signal ends the process at once, should shutting down hang.
	stop()
	for _, ln := range listeners {
		ln.Close()
	}
	wg.Wait()
	return nil
}

func acceptLoop(ctx context.Context, ln net.Listener, base client.Config, upstream *socksnet.Net, logger *slog.Logger) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: try again shortly rather
			// than spin or give up on the others.
			logger.Warn("SOCKS accept", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A handshake in progress at shutdown is cut, not waited for
			// (goptlib allows it 5 s).
			cut := context.AfterFunc(ctx, func() { conn.Close() })
			sc, err := socksHandshake(conn)
			cut()
			if err != nil {
				// Garbage from one local client must not stop the
				// others.
				logger.Debug("refused a SOCKS connection", "err", err)
				return
			}
			handle(ctx, sc, base, upstream, logger)
		}()
	}
}

func handle(ctx context.Context, sc *pt.SocksConn, base client.Config, upstream *socksnet.Net, logger *slog.Logger) {
	defer sc.Close()
	cfg := base
	err := cfg.Apply(func(n string) (string, bool) { return sc.Req.Args.Get(n) }, true)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		logger.Error("refusing SOCKS request: bad bridge line", "err", err)
		sc.Reject()
		return
	}
	var t *client.Transport
	if upstream != nil {
		t, err = client.NewProxied(cfg, logger, upstream)
	} else {
		t, err = client.New(cfg, logger)
	}
	if err != nil {
		logger.Error("refusing SOCKS request", "err", err)
		sc.Reject()
		return
	}
	defer t.Close()
	// Tor sends nothing before the SOCKS reply, so a read that returns
	// means tor hung up (or broke protocol): stop looking for a proxy then.
	dialCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var early []byte
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var b [1]byte
		n, err := sc.Read(b[:])
		early = b[:n]
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			cancel()
		}
	}()
	c, err := t.Dial(dialCtx)
	sc.SetReadDeadline(time.Unix(1, 0)) // release the watcher
	<-watched
	sc.SetReadDeadline(time.Time{})
	if err == nil && len(early) > 0 {
		if _, err = c.Write(early); err != nil {
			c.Close()
		}
	}
	if err != nil {
		logger.Error("could not connect through Snowflake", "err", err)
		sc.Reject()
		return
	}
	defer c.Close()
	if err := sc.Grant(&net.TCPAddr{IP: net.IPv4zero, Port: 0}); err != nil {
		logger.Warn("SOCKS grant", "err", err)
		return
	}
	logger.Info("connection established")
	pipe(ctx, sc, c)
	logger.Info("connection closed")
}

// proxyCheckTimeout bounds the start-up check of the upstream proxy.
const proxyCheckTimeout = 15 * time.Second

// setupProxy accepts a socks5 TOR_PT_PROXY and checks that the proxy grants
// a UDP association: WebRTC cannot work through a proxy that only does
// CONNECT, and failing now tells the user why, where a silent failure of
// every rendezvous would not.
func setupProxy(ctx context.Context, u *url.URL) (*socksnet.Net, error) {
	cfg, err := socksnet.ParseURL(u)
	if err != nil {
		return nil, fmt.Errorf("snowflake-client: TOR_PT_PROXY: %w", err)
	}
	n, err := socksnet.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("snowflake-client: TOR_PT_PROXY: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, proxyCheckTimeout)
	defer cancel()
	c, err := n.ListenUDPContext(cctx)
	if err != nil {
		return nil, fmt.Errorf("snowflake-client: the SOCKS5 proxy must support UDP ASSOCIATE for WebRTC: %w", err)
	}
	c.Close()
	return n, nil
}

// pipe copies both ways until either side ends or ctx is cancelled, then
// closes both.
func pipe(ctx context.Context, a, b net.Conn) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		io.CopyBuffer(dst, src, buf)
		closeBoth()
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}
