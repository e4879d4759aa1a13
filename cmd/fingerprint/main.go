// Command fingerprint shows how TLS and DTLS handshakes look on the wire:
// it captures on an interface (loopback, or a veth inside a test's network
// namespace) for a list of ports, or reads a pcap file, and prints JA4,
// JA4S, JA3 and a readable decode of every ClientHello, ServerHello and
// HelloVerifyRequest.
//
//	fingerprint -i lo -ports 8443,50000 -duration 30s
//	fingerprint -r capture.pcapng -raw
//
// Capturing needs dumpcap (Debian package wireshark-common, pulled in by
// tshark) and the right to capture (root); decoding needs tshark.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/snowflake-go/snowflake/common/scrub"
	"github.com/snowflake-go/snowflake/internal/fingerprint"
)

func main() {
	iface := flag.String("i", "lo", "interface to capture on")
	portList := flag.String("ports", "", "comma-separated TCP/UDP ports to capture (required unless -r)")
	proto := flag.String("proto", "", `capture only "udp" or "tcp" (default both)`)
	duration := flag.Duration("duration", 0, "stop capturing after this long (0: until interrupted)")
	readFile := flag.String("r", "", "read this pcap or pcapng file instead of capturing")
	writeFile := flag.String("w", "", "keep the capture in this pcapng file")
	raw := flag.Bool("raw", false, "also print JA4's unhashed lists (ja4_r)")
	tshark := flag.String("tshark", "tshark", "tshark executable (decodes capture files)")
	dumpcap := flag.String("dumpcap", "dumpcap", "dumpcap executable (captures)")
	unsafeLogging := flag.Bool("unsafe-logging", false, "keep IP addresses in diagnostic logs (the report itself always shows them)")
	flag.Parse()

	log := slog.New(scrub.NewHandler(slog.NewTextHandler(os.Stderr, nil), *unsafeLogging))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, config{
		iface: *iface, ports: *portList, proto: *proto, duration: *duration, readFile: *readFile,
		writeFile: *writeFile, raw: *raw, tshark: *tshark, dumpcap: *dumpcap,
	}); err != nil {
		log.Error("fingerprint failed", "error", err)
		os.Exit(1)
	}
}

type config struct {
	iface, ports, proto string
	duration            time.Duration
	readFile, writeFile string
	raw                 bool
	tshark, dumpcap     string
}

func parsePorts(s string) ([]int, error) {
	var ports []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("bad port %q", f)
		}
		ports = append(ports, p)
	}
	if len(ports) == 0 {
		return nil, errors.New("-ports is required when capturing")
	}
	return ports, nil
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	var packets []fingerprint.Packet
	var err error
	if cfg.readFile != "" {
		packets, err = fingerprint.ReadFile(ctx, cfg.tshark, cfg.readFile)
		if err != nil {
			return err
		}
	} else {
		if cfg.proto != "" && cfg.proto != "udp" && cfg.proto != "tcp" {
			return fmt.Errorf("-proto %q: want udp, tcp or empty", cfg.proto)
		}
		ports, err := parsePorts(cfg.ports)
		if err != nil {
			return err
		}
		startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := fingerprint.StartCapture(startCtx, fingerprint.CaptureConfig{
			Interface: cfg.iface, Filter: fingerprint.PortFilter(cfg.proto, ports...),
			Dumpcap: cfg.dumpcap, Tshark: cfg.tshark, File: cfg.writeFile, Logger: log,
		})
		cancel()
		if err != nil {
			return err
		}
		defer c.Close()
		// Tests and scripts wait for this line before sending traffic.
		fmt.Fprintf(os.Stderr, "capturing on %s: %s\n", cfg.iface, fingerprint.PortFilter(cfg.proto, ports...))
		if cfg.duration > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(cfg.duration):
			}
		} else {
			<-ctx.Done()
		}
		// The capture is decoded after an interrupt too, so use a fresh
		// context for reading it.
		readCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if packets, err = c.Stop(readCtx); err != nil {
			return err
		}
	}
	hellos, extractErr := fingerprint.Extract(packets)
	if err := fingerprint.WriteReport(os.Stdout, hellos, cfg.raw); err != nil {
		return err
	}
	if extractErr != nil {
		// Undecodable flows are reported, not fatal: the rest is valid.
		log.Warn("some flows could not be decoded", "error", extractErr)
	}
	if len(hellos) == 0 {
		fmt.Fprintf(os.Stderr, "no hellos in %d packets\n", len(packets))
	}
	return nil
}
