package ipcount

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Total is the label under which every address added to a group is
// counted, whatever its own label.
const Total = "total"

// Counter counts distinct addresses per group (e.g. "clients") and per
// label within the group (e.g. a rendezvous method) for one interval at a
// time. The groups and labels are fixed at construction, which bounds its
// memory (one 16 KiB sketch per label) and makes every report list every
// label, zeros included. It is safe for concurrent use.
type Counter struct {
	groups map[string][]string

	mu sync.Mutex
	// cur is guarded by mu.
	cur *interval
}

// interval is one counting period: a hash key that exists only for it, and
// the sketches of the hashes.
type interval struct {
	start    time.Time
	key      [32]byte
	sketches map[string]map[string]*Sketch // group → label → sketch
}

// New returns a Counter whose first interval starts at start. groups maps
// each group name to its labels; Total is implied and must not be listed.
func New(groups map[string][]string, start time.Time) (*Counter, error) {
	for g, labels := range groups {
		if g == "" {
			return nil, errors.New("ipcount: empty group name")
		}
		for _, l := range labels {
			if l == Total || l == "" {
				return nil, fmt.Errorf("ipcount: group %q: reserved or empty label %q", g, l)
			}
		}
	}
	c := &Counter{groups: groups}
	c.cur = c.newInterval(start)
	return c, nil
}

func (c *Counter) newInterval(start time.Time) *interval {
	iv := &interval{start: start, sketches: make(map[string]map[string]*Sketch, len(c.groups))}
	rand.Read(iv.key[:]) // crypto/rand.Read never fails (Go 1.24+)
	for g, labels := range c.groups {
		m := make(map[string]*Sketch, len(labels)+1)
		m[Total] = newSketch()
		for _, l := range labels {
			m[l] = newSketch()
		}
		iv.sketches[g] = m
	}
	return iv
}

// hash is a keyed hash of an address: SHA-256 over key‖address, a PRF for
// inputs of fixed length. Without the key, which is discarded at the end
// of the interval, a sketch register cannot be linked to an address.
func (iv *interval) hash(a netip.Addr) uint64 {
	var buf [32 + 16]byte
	copy(buf[:32], iv.key[:])
	a16 := a.Unmap().As16()
	copy(buf[32:], a16[:])
	sum := sha256.Sum256(buf[:])
	return binary.BigEndian.Uint64(sum[:8])
}

// Add counts addr in group under Total and under label. An invalid
// address, or an unknown group, is ignored; an unknown label is counted
// under Total only.
func (c *Counter) Add(addr netip.Addr, group, label string) {
	if !addr.IsValid() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.cur.sketches[group]
	if !ok {
		return
	}
	h := c.cur.hash(addr)
	g[Total].add(h)
	if s, ok := g[label]; ok && label != Total {
		s.add(h)
	}
}

// Report is the result of one interval.
type Report struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Counts holds the estimated number of distinct addresses, by group
	// and label.
	Counts map[string]map[string]uint64 `json:"counts"`
}

// Rotate ends the current interval at now, starts the next one with a
// fresh key, and returns the ended interval's estimates.
func (c *Counter) Rotate(now time.Time) Report {
	c.mu.Lock()
	old := c.cur
	c.cur = c.newInterval(now)
	c.mu.Unlock()
	r := Report{Start: old.start.UTC(), End: now.UTC(), Counts: make(map[string]map[string]uint64, len(old.sketches))}
	for g, m := range old.sketches {
		counts := make(map[string]uint64, len(m))
		for l, s := range m {
			counts[l] = s.Estimate()
		}
		r.Counts[g] = counts
	}
	return r
}

// fileTimeFormat names report files; no colons, which some tools treat
// as host separators.
const fileTimeFormat = "2006-01-02T150405Z"

// FileName returns the file name of a report that starts at start:
// prefix, the UTC start time and ".json".
func FileName(prefix string, start time.Time) string {
	return prefix + start.UTC().Format(fileTimeFormat) + ".json"
}

// WriteFile writes r as JSON to a new file named by FileName, never
// replacing an existing file (a "-N" suffix is added before ".json" if the
// name is taken, e.g. after a restart within the same second). The file
// appears complete or not at all. It returns the file's name.
func WriteFile(prefix string, r Report) (string, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("ipcount: encode report: %w", err)
	}
	data = append(data, '\n')
	name := FileName(prefix, r.Start)
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return "", fmt.Errorf("ipcount: write report: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return "", fmt.Errorf("ipcount: write report: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fmt.Errorf("ipcount: write report: %w", err)
	}
	// A hard link publishes the complete file under a name that must not
	// exist yet: unlike rename it never replaces an earlier report.
	base := name[:len(name)-len(".json")]
	for i := 0; i < 100; i++ {
		target := name
		if i > 0 {
			target = fmt.Sprintf("%s-%d.json", base, i)
		}
		err := os.Link(tmp.Name(), target)
		if err == nil {
			return target, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("ipcount: write report: %w", err)
		}
	}
	return "", fmt.Errorf("ipcount: write report: %s and 99 alternatives exist", name)
}
