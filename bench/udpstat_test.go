package main

import (
	"runtime"
	"testing"
)

func TestParseSNMP4(t *testing.T) {
	const real = "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 10749435 25735 83713 10674950 83713 0 0 5 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"UdpLite: 0 0 0 0 0 0 0 0 0\n"
	tests := []struct {
		name       string
		in         string
		recv, drop uint64
		ok         bool
	}{
		{"kernel 6 layout", real, 10749435, 83713, true},
		{"columns in another order", "Udp: RcvbufErrors InDatagrams\nUdp: 3 7\n", 7, 3, true},
		{"no Udp line", "Ip: Forwarding\nIp: 1\n", 0, 0, false},
		{"header without values", "Udp: InDatagrams\n", 0, 0, false},
		{"not a number", "Udp: InDatagrams\nUdp: many\n", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c udpCounters
			err := parseSNMP4(tt.in, &c)
			if (err == nil) != tt.ok {
				t.Fatalf("error %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (c.received != tt.recv || c.rcvbufDrops != tt.drop) {
				t.Errorf("got %+v, want received %d, drops %d", c, tt.recv, tt.drop)
			}
		})
	}
}

func TestParseSNMP6(t *testing.T) {
	const real = "Ip6InReceives                   \t4455\n" +
		"Udp6InDatagrams                 \t120\n" +
		"Udp6NoPorts                     \t3\n" +
		"Udp6RcvbufErrors                \t9\n" +
		"UdpLite6InDatagrams             \t0\n"
	tests := []struct {
		name       string
		in         string
		recv, drop uint64
	}{
		{"kernel 6 layout", real, 120, 9},
		{"no UDP lines", "Ip6InReceives 1\n", 0, 0},
		{"not a number is skipped", "Udp6InDatagrams many\nUdp6RcvbufErrors 2\n", 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := udpCounters{received: 1, rcvbufDrops: 1} // added to, as after the IPv4 counters
			parseSNMP6(tt.in, &c)
			if c.received != 1+tt.recv || c.rcvbufDrops != 1+tt.drop {
				t.Errorf("got %+v, want received %d, drops %d", c, 1+tt.recv, 1+tt.drop)
			}
		})
	}
}

// The machine's own counters parse (the bench runs on Linux only).
func TestReadUDPCounters(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/net/snmp is Linux's")
	}
	if _, err := readUDPCounters(); err != nil {
		t.Fatal(err)
	}
}
