package proxy

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Stats are the proxy's running totals. All fields are safe for concurrent
// use; read them with Load.
type Stats struct {
	// Polls counts broker polls sent; Matches those that returned a client.
	Polls, Matches atomic.Int64
	// PollErrors counts failed polls (network, HTTP status, bad response).
	PollErrors atomic.Int64
	// Connections counts clients whose data channel opened and whose relay
	// connection succeeded; Failed counts matched clients that never got
	// that far.
	Connections, Failed atomic.Int64
	// Active is the number of clients currently relayed.
	Active atomic.Int64
	// BytesUp counts bytes from clients to relays, BytesDown the reverse.
	BytesUp, BytesDown atomic.Int64

	mu        sync.Mutex     // guards countries
	countries map[string]int // connections per client country since the last TakeCountries
}

// TakeCountries returns the connections per client country (two-letter
// code, "??" when unknown) since the previous call, and resets them. It is
// empty unless Config.GeoIP is set.
func (s *Stats) TakeCountries() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := maps.Clone(s.countries)
	clear(s.countries)
	return m
}

func (s *Stats) addCountry(cc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.countries == nil {
		s.countries = make(map[string]int)
	}
	s.countries[cc]++
}

func (s *Stats) addUp(n int)   { s.BytesUp.Add(int64(n)) }
func (s *Stats) addDown(n int) { s.BytesDown.Add(int64(n)) }
