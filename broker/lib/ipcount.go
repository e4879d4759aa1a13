package broker

import (
	"context"
	"net/netip"
	"time"

	"github.com/snowflake-go/snowflake/broker/ipcount"
	"github.com/snowflake-go/snowflake/common/messages"
)

// Groups of the distinct-address reports: clients by rendezvous method,
// proxies by (normalised) proxy type.
const (
	ipGroupClients = "clients"
	ipGroupProxies = "proxies"
)

func ipCountGroups() map[string][]string {
	proxyTypes := append([]string{}, messages.KnownProxyTypes[:]...)
	proxyTypes = append(proxyTypes, messages.ProxyTypeUnknown)
	return map[string][]string{
		ipGroupClients: rendezvousMethods[:],
		ipGroupProxies: proxyTypes,
	}
}

// countIP records an address for the distinct-address reports.
func (b *Broker) countIP(a netip.Addr, group, label string) {
	if b.ipCount != nil {
		b.ipCount.Add(a, group, label)
	}
}

// nextBoundary returns the end of the interval containing now: intervals
// end on multiples of d (since the zero time), so hourly reports cover
// whole clock hours.
func nextBoundary(now time.Time, d time.Duration) time.Time {
	return now.Truncate(d).Add(d)
}

// ipCountLoop writes a report at the end of every interval, and one for
// the partial interval when ctx ends, so that a restart loses no counts.
func (b *Broker) ipCountLoop(ctx context.Context) {
	write := func(now time.Time) {
		r := b.ipCount.Rotate(now)
		name, err := ipcount.WriteFile(b.cfg.IPCountPrefix, r)
		if err != nil {
			b.log.Error("ip count report", "err", err)
			return
		}
		b.log.Debug("wrote ip count report", "file", name)
	}
	for {
		// Reports end exactly on the boundary, not when the timer
		// happened to fire, so that consecutive files tile the clock.
		end := nextBoundary(time.Now(), b.cfg.IPCountInterval)
		t := time.NewTimer(time.Until(end))
		select {
		case <-ctx.Done():
			t.Stop()
			write(time.Now())
			return
		case <-t.C:
			write(end)
		}
	}
}
