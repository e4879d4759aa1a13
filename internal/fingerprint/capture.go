package fingerprint

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/snowflake-go/snowflake/internal/childproc"
)

// PortFilter returns a BPF capture filter for the given ports: proto is
// "udp", "tcp" or "" for both. Without ports it filters by proto alone.
func PortFilter(proto string, ports ...int) string {
	if len(ports) == 0 {
		return proto
	}
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = "port " + strconv.Itoa(p)
	}
	f := "(" + strings.Join(parts, " or ") + ")"
	if proto != "" {
		f = proto + " and " + f
	}
	return f
}

// CaptureConfig configures [StartCapture].
type CaptureConfig struct {
	// Interface is the capture interface: "lo", a veth inside a test's
	// network namespace, or "any". Required.
	Interface string
	// Filter is the BPF capture filter (see [PortFilter]). Required, so a
	// capture never records unrelated traffic.
	Filter string
	// Dumpcap is Wireshark's capture program; empty means "dumpcap" on
	// PATH. It records the packets; tshark only reads the file afterwards,
	// because tshark's own start-up (loading every dissector) takes many
	// seconds on a busy machine.
	Dumpcap string
	// Tshark decodes the capture file; empty means "tshark" on PATH.
	Tshark string
	// File is where the capture is written (pcapng). Empty means a new
	// file in the system's temporary directory, removed by Close.
	File string
	// Logger receives capture start-up and stop events; nil discards them.
	Logger *slog.Logger
}

// Capture is a running packet capture. It must be stopped with
// [Capture.Stop] or [Capture.Close].
type Capture struct {
	cfg     CaptureConfig
	cmd     *exec.Cmd
	tmpDir  string        // removed by Close when the file was ours
	done    chan struct{} // closed when dumpcap has exited
	waitErr error
	scanned chan struct{} // closed when dumpcap's stderr is drained
	stderr  *lockedBuffer // dumpcap's diagnostics, for errors

	stopOnce  sync.Once
	closeOnce sync.Once
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartCapture starts dumpcap on cfg.Interface with cfg.Filter and returns
// once packets are being captured. ctx bounds the start-up only.
func StartCapture(ctx context.Context, cfg CaptureConfig) (*Capture, error) {
	if cfg.Interface == "" || cfg.Filter == "" {
		return nil, errors.New("fingerprint: capture: interface and filter are required")
	}
	if cfg.Tshark == "" {
		cfg.Tshark = "tshark"
	}
	if cfg.Dumpcap == "" {
		cfg.Dumpcap = "dumpcap"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Capture{cfg: cfg, done: make(chan struct{}), scanned: make(chan struct{}), stderr: &lockedBuffer{}}
	if c.cfg.File == "" {
		dir, err := os.MkdirTemp("", "fingerprint-capture-")
		if err != nil {
			return nil, fmt.Errorf("fingerprint: capture: %w", err)
		}
		c.tmpDir = dir
		c.cfg.File = filepath.Join(dir, "capture.pcapng")
	}
	// -q: no packet counts; dumpcap prints "File: ..." on stderr once the
	// interface is open with its filter and the file is created, which is
	// the signal that traffic from now on is recorded.
	c.cmd = exec.Command(cfg.Dumpcap, "-q", "-n", "-i", cfg.Interface, "-f", cfg.Filter, "-w", c.cfg.File)
	c.cmd.SysProcAttr = captureProcAttr()
	pr, pw := io.Pipe()
	c.cmd.Stderr = io.MultiWriter(c.stderr, pw)
	c.cmd.Stdout = c.stderr
	if err := childproc.Start(c.cmd); err != nil {
		c.removeTemp()
		return nil, fmt.Errorf("fingerprint: capture: start dumpcap: %w", err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		pw.Close()
		close(c.done)
	}()
	ready := make(chan struct{})
	go func() {
		defer close(c.scanned)
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.HasPrefix(sc.Text(), "File: ") {
				signalled = true
				close(ready)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-ready:
		cfg.Logger.Debug("capture started", "interface", cfg.Interface, "filter", cfg.Filter)
		return c, nil
	case <-c.done:
		<-c.scanned
		c.removeTemp()
		return nil, fmt.Errorf("fingerprint: capture: dumpcap exited: %v: %s", c.waitErr, strings.TrimSpace(c.stderr.String()))
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("fingerprint: capture: waiting for dumpcap: %w", ctx.Err())
	}
}

// File returns the path of the capture file.
func (c *Capture) File() string { return c.cfg.File }

// settle is how long Stop lets dumpcap receive packets that were on the
// wire just before it is called: libpcap delivers them in blocks, after a
// timeout of a few hundred milliseconds, and dumpcap drops what it has not
// received when it is interrupted.
const settle = 700 * time.Millisecond

// stopCapture interrupts dumpcap (which flushes the file) and waits for it.
func (c *Capture) stopCapture() {
	c.stopOnce.Do(func() {
		select {
		case <-c.done:
			return
		case <-time.After(settle):
		}
		c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	<-c.scanned
}

// Stop ends the capture and returns the captured packets with payloads.
// The capture file stays until Close.
func (c *Capture) Stop(ctx context.Context) ([]Packet, error) {
	c.stopCapture()
	if _, err := os.Stat(c.cfg.File); err != nil {
		return nil, fmt.Errorf("fingerprint: capture: no capture file (dumpcap: %s): %w", strings.TrimSpace(c.stderr.String()), err)
	}
	return ReadFile(ctx, c.cfg.Tshark, c.cfg.File)
}

// Close stops dumpcap if it still runs and removes a temporary capture
// file. It is idempotent.
func (c *Capture) Close() error {
	c.stopCapture()
	c.closeOnce.Do(c.removeTemp)
	return nil
}

func (c *Capture) removeTemp() {
	if c.tmpDir != "" {
		os.RemoveAll(c.tmpDir)
	}
}

// readFields are the tshark fields ReadFile asks for, in column order.
var readFields = []string{
	"frame.time_epoch", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst",
	"udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport", "tcp.seq_raw",
	"udp.payload", "tcp.payload",
}

// ReadFile reads a pcap or pcapng file with tshark (empty tshark means
// "tshark" on PATH) and returns its TCP and UDP packets that carry a
// payload, in file order.
func ReadFile(ctx context.Context, tshark, path string) ([]Packet, error) {
	if tshark == "" {
		tshark = "tshark"
	}
	// ICMP errors quote the UDP header of the packet they answer; leave
	// them out so that quoted ports are not mistaken for a datagram.
	args := []string{"-n", "-r", path, "-Y", "(udp or tcp) and not icmp and not icmpv6",
		"-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"}
	for _, f := range readFields {
		args = append(args, "-e", f)
	}
	cmd := exec.CommandContext(ctx, tshark, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("fingerprint: read %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return parseFields(out)
}

// parseFields decodes tshark's tab-separated field output.
func parseFields(out []byte) ([]Packet, error) {
	var packets []Packet
	for i, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		col := strings.Split(line, "\t")
		if len(col) != len(readFields) {
			return nil, fmt.Errorf("fingerprint: tshark line %d: %d fields, want %d", i+1, len(col), len(readFields))
		}
		get := func(name string) string {
			for j, f := range readFields {
				if f == name {
					return col[j]
				}
			}
			return ""
		}
		p, err := parsePacket(get)
		if err != nil {
			return nil, fmt.Errorf("fingerprint: tshark line %d: %w", i+1, err)
		}
		if len(p.Payload) > 0 {
			packets = append(packets, p)
		}
	}
	return packets, nil
}

func parsePacket(get func(string) string) (Packet, error) {
	var p Packet
	sec, frac, _ := strings.Cut(get("frame.time_epoch"), ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return p, fmt.Errorf("time: %w", err)
	}
	ns := int64(0)
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return p, fmt.Errorf("time: %w", err)
		}
	}
	p.Time = time.Unix(s, ns)
	src, dst := get("ip.src"), get("ip.dst")
	if src == "" {
		src, dst = get("ipv6.src"), get("ipv6.dst")
	}
	sport, dport, payload := get("tcp.srcport"), get("tcp.dstport"), get("tcp.payload")
	if get("udp.srcport") != "" {
		p.UDP = true
		sport, dport, payload = get("udp.srcport"), get("udp.dstport"), get("udp.payload")
	} else if seq := get("tcp.seq_raw"); seq != "" {
		v, err := strconv.ParseUint(seq, 10, 32)
		if err != nil {
			return p, fmt.Errorf("tcp.seq_raw: %w", err)
		}
		p.Seq = uint32(v)
	}
	if p.Src, err = addrPort(src, sport); err != nil {
		return p, fmt.Errorf("source: %w", err)
	}
	if p.Dst, err = addrPort(dst, dport); err != nil {
		return p, fmt.Errorf("destination: %w", err)
	}
	// Older tshark versions separate payload bytes with colons.
	if p.Payload, err = hex.DecodeString(strings.ReplaceAll(payload, ":", "")); err != nil {
		return p, fmt.Errorf("payload: %w", err)
	}
	return p, nil
}

func addrPort(addr, port string) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(n)), nil
}
