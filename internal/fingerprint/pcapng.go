package fingerprint

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// pcapng block types (the pcapng specification, section 4).
const (
	blockSectionHeader  = 0x0A0D0D0A
	blockObsoletePacket = 0x00000002
	blockSimplePacket   = 0x00000003
	blockEnhancedPacket = 0x00000006
	byteOrderMagic      = 0x1A2B3C4D
)

// countPcapngPackets counts the packet blocks of the complete blocks in b,
// a pcapng file that may still be being written: a block cut short at the
// end is not counted, and is no error.
func countPcapngPackets(b []byte) (int, error) {
	var order binary.ByteOrder
	n := 0
	for len(b) >= 12 {
		// A section header's type reads the same in either byte order;
		// its magic says which one the section uses.
		if binary.LittleEndian.Uint32(b) == blockSectionHeader {
			switch {
			case binary.LittleEndian.Uint32(b[8:]) == byteOrderMagic:
				order = binary.LittleEndian
			case binary.BigEndian.Uint32(b[8:]) == byteOrderMagic:
				order = binary.BigEndian
			default:
				return n, errors.New("fingerprint: pcapng: bad byte-order magic")
			}
		} else if order == nil {
			return n, errors.New("fingerprint: pcapng: no section header at the start")
		}
		length := order.Uint32(b[4:])
		if length < 12 || length%4 != 0 {
			return n, fmt.Errorf("fingerprint: pcapng: bad block length %d", length)
		}
		if uint64(length) > uint64(len(b)) {
			break // still being written
		}
		switch order.Uint32(b) {
		case blockObsoletePacket, blockSimplePacket, blockEnhancedPacket:
			n++
		}
		b = b[length:]
	}
	return n, nil
}

// Packets returns how many packets dumpcap has written to the capture
// file so far. dumpcap writes each one within a few hundred milliseconds
// of capturing it.
func (c *Capture) Packets() (int, error) {
	b, err := os.ReadFile(c.cfg.File)
	if err != nil {
		return 0, fmt.Errorf("fingerprint: capture: %w", err)
	}
	return countPcapngPackets(b)
}

// WaitPackets waits until the capture file holds at least n packets. A
// caller that knows what it sent calls it before Stop: on a loaded
// machine dumpcap may take longer than Stop's fixed settling time to
// receive a packet, and interrupting it earlier loses the packet.
func (c *Capture) WaitPackets(ctx context.Context, n int) error {
	for {
		got, err := c.Packets()
		if err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fingerprint: capture: %d of %d packets: %w", got, n, ctx.Err())
		case <-c.done:
			// The file is complete now.
			if got, err = c.Packets(); err == nil && got < n {
				err = fmt.Errorf("fingerprint: capture: dumpcap exited after %d of %d packets: %s", got, n, strings.TrimSpace(c.stderr.String()))
			}
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}
