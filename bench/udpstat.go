package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// udpCounters are the kernel's UDP counters for this network namespace
// (the harness runs in its own, so they count only the chain's traffic).
type udpCounters struct {
	received    uint64 // datagrams delivered to sockets, IPv4 and IPv6
	rcvbufDrops uint64 // datagrams dropped because a socket's receive buffer was full
}

// readUDPCounters reads /proc/net/snmp and /proc/net/snmp6.
func readUDPCounters() (udpCounters, error) {
	var c udpCounters
	v4, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return c, fmt.Errorf("udp counters: %w", err)
	}
	if err := parseSNMP4(string(v4), &c); err != nil {
		return c, err
	}
	f, err := os.Open("/proc/net/snmp6")
	if err != nil {
		// No IPv6 in this kernel: the IPv4 counters are all there is.
		return c, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "Udp6InDatagrams":
			c.received += n
		case "Udp6RcvbufErrors":
			c.rcvbufDrops += n
		}
	}
	return c, sc.Err()
}

// parseSNMP4 adds the "Udp:" header/value line pair of /proc/net/snmp.
func parseSNMP4(s string, c *udpCounters) error {
	var header []string
	for line := range strings.Lines(s) {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = fields
			continue
		}
		for i, f := range fields[1:] {
			if i+1 >= len(header) {
				break
			}
			n, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return fmt.Errorf("udp counters: %s: %w", header[i+1], err)
			}
			switch header[i+1] {
			case "InDatagrams":
				c.received += n
			case "RcvbufErrors":
				c.rcvbufDrops += n
			}
		}
		return nil
	}
	return fmt.Errorf("udp counters: no Udp line in /proc/net/snmp")
}
