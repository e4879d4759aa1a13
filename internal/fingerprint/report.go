package fingerprint

import (
	"fmt"
	"io"
	"time"
)

// WriteReport prints one block per hello: time, direction and kind, then
// the fingerprints (JA4 and JA3 for a ClientHello, JA4S and the summary
// for a ServerHello) and the readable decode. raw adds JA4's unhashed
// lists (ja4_r), which show what differs between two fingerprints.
func WriteReport(w io.Writer, hellos []Hello, raw bool) error {
	for _, h := range hellos {
		proto := "TLS"
		if h.DTLS {
			proto = "DTLS"
		}
		kind := ""
		switch {
		case h.Client != nil:
			kind = "ClientHello"
		case h.Server != nil && h.Server.HelloRetryRequest:
			kind = "HelloRetryRequest"
		case h.Server != nil:
			kind = "ServerHello"
		case h.Verify != nil:
			kind = "HelloVerifyRequest"
		default:
			continue
		}
		if _, err := fmt.Fprintf(w, "%s %s -> %s %s %s\n", h.Time.UTC().Format(time.RFC3339Nano), h.Src, h.Dst, proto, kind); err != nil {
			return err
		}
		var lines []string
		switch {
		case h.Client != nil:
			lines = append(lines, "JA4    "+h.Client.JA4())
			if raw {
				lines = append(lines, "JA4_r  "+h.Client.JA4R())
			}
			text, hash := h.Client.JA3()
			lines = append(lines, "JA3    "+hash+" "+text, "hello  "+h.Client.String())
		case h.Server != nil:
			lines = append(lines, "JA4S   "+h.Server.JA4S(), "server "+h.Server.Summary().String(), "hello  "+h.Server.String())
		case h.Verify != nil:
			lines = append(lines, "hello  "+h.Verify.String())
		}
		for _, l := range lines {
			if _, err := fmt.Fprintf(w, "  %s\n", l); err != nil {
				return err
			}
		}
	}
	return nil
}
