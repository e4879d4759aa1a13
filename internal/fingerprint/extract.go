package fingerprint

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Packet is one captured TCP segment or UDP datagram with a payload.
type Packet struct {
	Time     time.Time
	Src, Dst netip.AddrPort
	// UDP is set for a datagram; otherwise the packet is a TCP segment.
	UDP bool
	// Seq is the TCP segment's raw sequence number.
	Seq     uint32
	Payload []byte
}

// Hello is one decoded hello (or HelloVerifyRequest) and where it went.
// Exactly one of Client, Server and Verify is set.
type Hello struct {
	Time     time.Time
	DTLS     bool
	Src, Dst netip.AddrPort
	Client   *ClientHello
	Server   *ServerHello
	Verify   *HelloVerifyRequest
}

type flowKey struct {
	src, dst netip.AddrPort
	udp      bool
}

// flow is one direction of one connection.
type flow struct {
	stream  StreamReassembler
	dgram   DatagramReassembler
	next    uint32 // next expected TCP sequence number
	started bool
	failed  bool
}

// isDTLS reports whether a UDP payload is DTLS under the RFC 7983
// demultiplexing rule; STUN and TURN share a WebRTC port with DTLS.
func isDTLS(b []byte) bool {
	return len(b) > 0 && b[0] >= 20 && b[0] <= 63
}

// Extract decodes every hello in packets, which must be in capture order.
// TCP payloads are put in sequence order per direction (retransmissions
// dropped); UDP payloads that are not DTLS are skipped. A direction that
// fails to decode contributes an error and no further hellos; hellos from
// other directions are still returned.
func Extract(packets []Packet) ([]Hello, error) {
	flows := map[flowKey]*flow{}
	var hellos []Hello
	var errs []error
	for _, p := range packets {
		if len(p.Payload) == 0 || p.UDP && !isDTLS(p.Payload) {
			continue
		}
		k := flowKey{p.Src, p.Dst, p.UDP}
		f := flows[k]
		if f == nil {
			f = &flow{}
			flows[k] = f
		}
		if f.failed {
			continue
		}
		var msgs []Message
		var err error
		if p.UDP {
			msgs, err = f.dgram.Add(p.Payload)
		} else {
			payload := p.Payload
			if !f.started {
				f.started, f.next = true, p.Seq
			}
			switch d := int32(p.Seq - f.next); {
			case d > 0:
				err = fmt.Errorf("tcp: %d bytes missing before sequence %d", d, p.Seq)
			case -d >= int32(len(payload)):
				continue // a retransmission of bytes already seen
			default:
				payload = payload[-d:]
				f.next += uint32(len(payload))
				msgs, err = f.stream.Add(payload)
			}
		}
		for _, m := range msgs {
			h, herr := decodeHello(m, p.UDP)
			if herr != nil {
				err = errors.Join(err, herr)
				continue
			}
			if h == nil {
				continue
			}
			h.Time, h.Src, h.Dst = p.Time, p.Src, p.Dst
			hellos = append(hellos, *h)
		}
		if err != nil {
			f.failed = true
			errs = append(errs, fmt.Errorf("fingerprint: %s -> %s: %w", p.Src, p.Dst, err))
		}
	}
	return hellos, errors.Join(errs...)
}

// decodeHello decodes m when it is a hello, and returns nil otherwise.
func decodeHello(m Message, dtls bool) (*Hello, error) {
	h := &Hello{DTLS: dtls}
	var err error
	switch m.Type {
	case TypeClientHello:
		if h.Client, err = ParseClientHello(m.Body, dtls); err == nil {
			h.Client.RecordVersion = m.RecordVersion
		}
	case TypeServerHello:
		if h.Server, err = ParseServerHello(m.Body, dtls); err == nil {
			h.Server.RecordVersion = m.RecordVersion
		}
	case TypeHelloVerifyRequest:
		if !dtls {
			return nil, nil
		}
		if h.Verify, err = ParseHelloVerifyRequest(m.Body); err == nil {
			h.Verify.RecordVersion = m.RecordVersion
		}
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return h, nil
}
