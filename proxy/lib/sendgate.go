package proxy

const (
	// Flow control on the data channel (wire-protocol §4.3): sending to a
	// client pauses while its data channel holds more than a high-water
	// mark and resumes when the amount falls to half of it. Upstream's
	// mark is a fixed 512 KiB per client; here that is the most a client
	// gets, and the proxy's clients share dcQueueBudget between them,
	// down to dcMinHighWater each (see dcHighWater).
	dcMaxHighWater = 512 << 10
	dcMinHighWater = 64 << 10
	dcQueueBudget  = 6 << 20
)

// dcHighWater is the high-water mark of each client's data channel while
// active clients are being relayed.
//
// The budget is shared because what waits in data channels costs twice:
// the proxy holds it in memory (and collects it), and it reaches the
// client as a backlog that the client must work through while its KCP
// counts it as round-trip time. Up to 12 clients still get upstream's
// 512 KiB. With 50 busy clients on one 2-core machine (go run ./bench
// -clients 10,50), 512 KiB each kept 25 MB waiting: the aggregate was
// 13–18 MB/s against ~54 MB/s with 10 clients, and 15–27% of the server's
// KCP segments were retransmissions. With 123 KiB each it was 27–36 MB/s
// with 6–11% retransmitted; the 10 clients' figure did not change. The
// share caps a client at roughly its mark per round trip (123 KiB in
// 200 ms is about 0.6 MB/s), and only while that many clients are
// connected.
func dcHighWater(active int64) uint64 {
	share := uint64(dcQueueBudget) / uint64(max(active, 1))
	return min(max(share, dcMinHighWater), dcMaxHighWater)
}

// bufferedSender is the flow-control side of a data channel.
type bufferedSender interface {
	BufferedAmount() uint64
	SetBufferedAmountLowThreshold(uint64)
	OnBufferedAmountLow(func())
}

// sendGate paces the writes to one client's data channel by dcHighWater.
type sendGate struct {
	dc        bufferedSender
	active    func() int64 // clients being relayed now
	low       chan struct{}
	threshold uint64 // last low threshold given to dc
}

func newSendGate(dc bufferedSender, active func() int64) *sendGate {
	g := &sendGate{dc: dc, active: active, low: make(chan struct{}, 1)}
	dc.OnBufferedAmountLow(func() {
		select {
		case g.low <- struct{}{}:
		default:
		}
	})
	return g
}

// wait returns true once the data channel holds at most the current
// high-water mark, waiting if needed until it drains to half the mark. It
// returns false if done is closed first.
func (g *sendGate) wait(done <-chan struct{}) bool {
	high := dcHighWater(g.active())
	if g.dc.BufferedAmount() <= high {
		return true
	}
	if lowMark := high / 2; lowMark != g.threshold {
		g.threshold = lowMark
		g.dc.SetBufferedAmountLowThreshold(lowMark)
	}
	// A signal left from an earlier crossing is stale: the loop checks
	// the amount again.
	for g.dc.BufferedAmount() > high {
		select {
		case <-g.low:
		case <-done:
			return false
		}
	}
	return true
}
