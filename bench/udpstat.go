package main

import (
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
	v6, err := os.ReadFile("/proc/net/snmp6")
	if err != nil {
		// No IPv6 in this kernel: the IPv4 counters are all there is.
		return c, nil
	}
	parseSNMP6(string(v6), &c)
	return c, nil
}

// parseSNMP6 adds the UDP lines ("name value") of /proc/net/snmp6; a line
// that does not parse is skipped.
func parseSNMP6(s string, c *udpCounters) {
	for line := range strings.Lines(s) {
		fields := strings.Fields(line)
		if len(fields) != 2 {
			continue
		}
		n, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Udp6InDatagrams":
			c.received += n
		case "Udp6RcvbufErrors":
			c.rcvbufDrops += n
		}
	}
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
