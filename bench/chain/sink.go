package chain

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"sync"
)

// The sink stands where tor's ORPort would be: the bridge server connects
// each client stream to it. A stream starts with a one-byte operation:
//
//	'D' seed(8) offset(8) end(8): the sink sends bytes [offset, end) of the
//	    pseudorandom stream named by seed, then closes.
//	'E': the sink echoes everything until EOF.
//
// The pseudorandom stream is made of independent 64 KiB blocks, so a download
// can resume at any offset and the receiver can compute the expected SHA-256
// without the sink's help.
const (
	OpDownload = 'D'
	OpEcho     = 'E'

	blockSize = 64 << 10
	// MaxDownload bounds a request, so a malformed header cannot make the
	// sink stream forever.
	MaxDownload = 1 << 40
)

// Pattern is the deterministic byte stream served by the sink.
type Pattern struct{ Seed uint64 }

// block fills p (len blockSize) with block number i.
func (pt Pattern) block(i uint64, p []byte) {
	var key [32]byte
	binary.BigEndian.PutUint64(key[0:], pt.Seed)
	binary.BigEndian.PutUint64(key[8:], i)
	c := rand.NewChaCha8(key)
	c.Read(p)
}

// WriteRange writes bytes [off, end) of the stream to w.
func (pt Pattern) WriteRange(ctx context.Context, w io.Writer, off, end uint64) error {
	buf := make([]byte, blockSize)
	for off < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		bi := off / blockSize
		pt.block(bi, buf)
		lo := off - bi*blockSize
		hi := uint64(blockSize)
		if rem := end - bi*blockSize; rem < hi {
			hi = rem
		}
		if _, err := w.Write(buf[lo:hi]); err != nil {
			return err
		}
		off = bi*blockSize + hi
	}
	return nil
}

// SHA256 returns the digest of the first n bytes of the stream.
func (pt Pattern) SHA256(n uint64) [32]byte {
	h := sha256.New()
	pt.WriteRange(context.Background(), h, 0, n)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Sink is the TCP service described above.
type Sink struct {
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
	once  sync.Once
}

// StartSink listens on a free loopback port and serves until Close.
func StartSink() (*Sink, error) {
	return StartSinkOn("127.0.0.1:0")
}

// StartSinkOn listens on addr and serves until Close.
func StartSinkOn(addr string) (*Sink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("chain: sink: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sink{ln: ln, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr is the sink's host:port.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

func (s *Sink) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *Sink) serve(c net.Conn) {
	var op [1]byte
	if _, err := io.ReadFull(c, op[:]); err != nil {
		return
	}
	switch op[0] {
	case OpEcho:
		io.Copy(c, c)
	case OpDownload:
		var hdr [24]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		seed := binary.BigEndian.Uint64(hdr[0:])
		off := binary.BigEndian.Uint64(hdr[8:])
		end := binary.BigEndian.Uint64(hdr[16:])
		if off > end || end > MaxDownload {
			return
		}
		Pattern{seed}.WriteRange(s.ctx, c, off, end)
	}
}

// Close stops the sink and every connection; it is idempotent.
func (s *Sink) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.cancel()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.ln.Close()
		s.wg.Wait()
	})
	return nil
}

// Download requests bytes [off, end) of pattern seed over conn (a stream to
// the sink) and hashes what arrives into h, calling progress (if not nil)
// with the number of new bytes. It returns the number of bytes received; a
// short count comes with an error.
func Download(ctx context.Context, conn net.Conn, seed, off, end uint64, h hash.Hash, progress func(int)) (uint64, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var hdr [25]byte
	hdr[0] = OpDownload
	binary.BigEndian.PutUint64(hdr[1:], seed)
	binary.BigEndian.PutUint64(hdr[9:], off)
	binary.BigEndian.PutUint64(hdr[17:], end)
	if _, err := conn.Write(hdr[:]); err != nil {
		return 0, fmt.Errorf("chain: download request: %w", err)
	}
	buf := make([]byte, 256<<10)
	var got uint64
	want := end - off
	for got < want {
		n, err := conn.Read(buf[:min(uint64(len(buf)), want-got)])
		if n > 0 {
			h.Write(buf[:n])
			got += uint64(n)
			if progress != nil {
				progress(n)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return got, fmt.Errorf("chain: download after %d of %d bytes: %w", got, want, err)
		}
	}
	return got, nil
}
