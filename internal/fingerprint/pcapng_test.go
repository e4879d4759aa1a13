package fingerprint

import (
	"encoding/binary"
	"testing"
)

// pcapngBlock builds a block of the given type whose body is n zero bytes
// (rounded up to 4), in byte order o.
func pcapngBlock(o binary.ByteOrder, typ uint32, n int) []byte {
	n = (n + 3) &^ 3
	b := make([]byte, 12+n)
	o.PutUint32(b, typ)
	o.PutUint32(b[4:], uint32(len(b)))
	o.PutUint32(b[len(b)-4:], uint32(len(b)))
	return b
}

func pcapngSection(o binary.ByteOrder) []byte {
	b := pcapngBlock(o, blockSectionHeader, 16)
	o.PutUint32(b[8:], byteOrderMagic)
	return b
}

func join(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// packetOfLength is a section with one packet block whose length field
// says n.
func packetOfLength(n uint32) []byte {
	section := pcapngSection(binary.LittleEndian)
	b := join(section, pcapngBlock(binary.LittleEndian, blockEnhancedPacket, 4))
	binary.LittleEndian.PutUint32(b[len(section)+4:], n)
	return b
}

func TestCountPcapngPackets(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	const idb = 0x00000001 // interface description: not a packet
	full := join(pcapngSection(le), pcapngBlock(le, idb, 8),
		pcapngBlock(le, blockEnhancedPacket, 60), pcapngBlock(le, blockSimplePacket, 30),
		pcapngBlock(le, blockObsoletePacket, 40), pcapngBlock(le, 0x00000005, 20))
	for _, tc := range []struct {
		name    string
		in      []byte
		want    int
		wantErr bool
	}{
		{"empty", nil, 0, false},
		{"section only", pcapngSection(le), 0, false},
		{"three kinds of packet block", full, 3, false},
		{"big-endian", join(pcapngSection(be), pcapngBlock(be, blockEnhancedPacket, 10), pcapngBlock(be, blockEnhancedPacket, 10)), 2, false},
		{"block still being written", full[:len(full)-32-10], 2, false}, // into the obsolete packet block
		{"header of a block only", join(pcapngSection(le), pcapngBlock(le, blockEnhancedPacket, 10)[:8]), 0, false},
		{"second section", join(full, pcapngSection(be), pcapngBlock(be, blockEnhancedPacket, 4)), 4, false},
		{"no section header", pcapngBlock(le, blockEnhancedPacket, 10), 0, true},
		{"bad magic", func() []byte { b := pcapngSection(le); b[8] = 0; return b }(), 0, true},
		{"length below the minimum", packetOfLength(8), 0, true},
		{"length not a multiple of 4", packetOfLength(17), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := countPcapngPackets(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("countPcapngPackets = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzCountPcapngPackets(f *testing.F) {
	le := binary.LittleEndian
	f.Add(join(pcapngSection(le), pcapngBlock(le, blockEnhancedPacket, 60)))
	f.Add(join(pcapngSection(binary.BigEndian), pcapngBlock(binary.BigEndian, blockSimplePacket, 7)))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _ := countPcapngPackets(b)
		// Every packet block takes at least 12 bytes after a 12-byte
		// section header.
		if n < 0 || (n > 0 && 12*(n+1) > len(b)) {
			t.Fatalf("%d packets in %d bytes", n, len(b))
		}
	})
}
