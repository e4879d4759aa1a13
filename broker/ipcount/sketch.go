// Package ipcount counts distinct IP addresses per time interval without
// storing any address: each address is hashed under a random key that
// lives only as long as its interval, and only the keyed hashes (while
// few) and a HyperLogLog sketch of them are kept. At the end of an interval the estimates are written to a
// new file and the key is discarded, so nothing left in memory or on disk
// can tell whether a given address was seen.
package ipcount

import (
	"math"
	"math/bits"
)

// precision is the number of hash bits that pick a register: 2^14
// registers (16 KiB per sketch) give a standard error of about 0.8 %,
// and linear counting keeps small counts (the common case for rare
// rendezvous methods) almost exact.
const precision = 14

const numRegisters = 1 << precision

// Sketch is a HyperLogLog cardinality estimator over 64-bit hashes. The
// zero value is not usable; use newSketch. It is not safe for concurrent
// use.
type Sketch struct {
	reg []uint8
	// exact holds every distinct hash while there are at most exactLimit
	// of them, so small counts are exact: with registers alone two of a
	// handful of addresses share a register once in a few thousand
	// intervals and the count comes out one short. nil once over.
	exact map[uint64]struct{}
}

// exactLimit bounds the exact set (about 64 KiB of hashes); above it the
// registers' estimate is used, whose error (~0.8 %) is then below one in
// most intervals anyway.
const exactLimit = 4096

func newSketch() *Sketch {
	return &Sketch{reg: make([]uint8, numRegisters), exact: make(map[uint64]struct{})}
}

// add records one hash. The top bits choose a register; the register keeps
// the longest run of leading zeros (plus one) seen in the remaining bits.
func (s *Sketch) add(h uint64) {
	if s.exact != nil {
		s.exact[h] = struct{}{}
		if len(s.exact) > exactLimit {
			s.exact = nil
		}
	}
	idx := h >> (64 - precision)
	// The low bits shifted up, with a sentinel so that rank is at most
	// 64-precision+1 even for an all-zero remainder.
	rest := h<<precision | 1<<(precision-1)
	rank := uint8(bits.LeadingZeros64(rest)) + 1
	if rank > s.reg[idx] {
		s.reg[idx] = rank
	}
}

// maxRank is the largest register value: one more than the number of
// hash bits left after the register index.
const maxRank = 64 - precision + 1

// Estimate returns the estimated number of distinct hashes added. It uses
// Ertl's improved estimator ("New cardinality estimation algorithms for
// HyperLogLog sketches", 2017), which needs no empirical bias tables and
// is accurate from zero up: small counts come out (nearly) exact.
func (s *Sketch) Estimate() uint64 {
	if s.exact != nil {
		return uint64(len(s.exact))
	}
	var hist [maxRank + 1]int
	for _, r := range s.reg {
		hist[r]++
	}
	const m = float64(numRegisters)
	if hist[0] == numRegisters {
		return 0
	}
	z := m * tau(1-float64(hist[maxRank])/m)
	for k := maxRank - 1; k >= 1; k-- {
		z = 0.5 * (z + float64(hist[k]))
	}
	z += m * sigma(float64(hist[0])/m)
	return uint64(math.Round(m * m / (2 * math.Ln2 * z)))
}

// sigma and tau are the series of Ertl's estimator for the share of empty
// and of saturated registers.
func sigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		prev := z
		z += x * y
		y += y
		if z == prev {
			return z
		}
	}
}

func tau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == prev {
			return z / 3
		}
	}
}
