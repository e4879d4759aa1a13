package messages

import (
	"bytes"
	"strings"
	"testing"
)

// Each fuzz target checks that the decoder never panics and that whatever
// it accepts survives an encode/decode round trip unchanged.

func FuzzDecodeClientPollRequest(f *testing.F) {
	f.Add([]byte("1.0\n" + `{"offer":"X","nat":"unknown","fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}`))
	f.Add([]byte("1.0\n{}"))
	f.Add([]byte(offerEnvelope))
	f.Add([]byte("1.0\n" + `{"offer":"\u0000","nat":"restricted","fingerprint":"` + "ab" + `"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeClientPollRequest(b)
		if err != nil {
			if Reason(err) == "" {
				t.Fatalf("empty reason for %v", err)
			}
			return
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		back, err := DecodeClientPollRequest(enc)
		if err != nil || *back != *r {
			t.Fatalf("round trip %+v -> %+v, %v", r, back, err)
		}
	})
}

func FuzzDecodeProxyPollRequest(f *testing.F) {
	f.Add([]byte(`{"Sid":"q4Yh2x","Version":"1.3","Type":"standalone","NAT":"restricted","Clients":8,"AcceptedRelayPattern":"snowflake.torproject.net$"}`))
	f.Add([]byte(`{"Sid":"s","Version":"1.2"}`))
	f.Add([]byte(`{"sid":"s","version":"1.","clients":-1,"acceptedRelayPattern":null}`))
	f.Add([]byte(`{"Sid":"` + strings.Repeat("s", MaxSidLength+1) + `","Version":"1.3"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeProxyPollRequest(b)
		if err != nil {
			return
		}
		if r.Clients < 0 {
			t.Fatalf("negative clients %d", r.Clients)
		}
		if len(r.Sid) > MaxSidLength {
			t.Fatalf("accepted a Sid of %d bytes", len(r.Sid))
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		back, err := DecodeProxyPollRequest(enc)
		if err != nil || *back != *r {
			t.Fatalf("round trip %+v -> %+v, %v", r, back, err)
		}
	})
}

func FuzzDecodeProxyPollResponse(f *testing.F) {
	f.Add([]byte(`{"Status":"client match","Offer":"O","NAT":"unrestricted","NextPoll":20000,"RelayURL":"wss://x/"}`))
	f.Add([]byte(`{"Status":"no match"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeProxyPollResponse(b)
		if err != nil {
			return
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		back, err := DecodeProxyPollResponse(enc)
		if err != nil || *back != *r {
			t.Fatalf("round trip %+v -> %+v, %v", r, back, err)
		}
	})
}

func FuzzDecodeAnswerRequest(f *testing.F) {
	f.Add([]byte(`{"Version":"1.3","Sid":"s","Answer":"A"}`))
	f.Add([]byte(`{"Version":"1","sid":"s","answer":"{\"type\":\"answer\"}"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeAnswerRequest(b)
		if err != nil {
			return
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		back, err := DecodeAnswerRequest(enc)
		if err != nil || *back != *r {
			t.Fatalf("round trip %+v -> %+v, %v", r, back, err)
		}
	})
}

func FuzzDecodeClientPollResponse(f *testing.F) {
	f.Add([]byte(`{"answer":"A"}`))
	f.Add([]byte(`{"error":"timed out waiting for answer!"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeClientPollResponse(b)
		if err != nil {
			return
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeClientPollResponse(enc)
		if err != nil || *back != *r {
			t.Fatalf("round trip %+v -> %+v, %v", r, back, err)
		}
	})
}

func FuzzDecodeSessionDescription(f *testing.F) {
	f.Add(`{"type":"offer","sdp":"v=0\r\n"}`)
	f.Add(`{"type":"answer"}`)
	f.Fuzz(func(t *testing.T, s string) {
		d, err := DecodeSessionDescription(s)
		if err != nil {
			return
		}
		enc, err := d.Encode()
		if err != nil {
			t.Fatalf("re-encode %+v: %v", d, err)
		}
		back, err := DecodeSessionDescription(enc)
		if err != nil || back != d {
			t.Fatalf("round trip %+v -> %+v, %v", d, back, err)
		}
	})
}

func FuzzDecodeAnswerResponse(f *testing.F) {
	f.Add([]byte(`{"Status":"success"}`))
	f.Add([]byte(`{"status":"client gone","Extra":1}`))
	f.Add([]byte(`{"Status":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeAnswerResponse(b)
		if err != nil {
			return
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		back, err := DecodeAnswerResponse(enc)
		if err != nil || *back != *r {
			t.Fatalf("round trip %+v -> %+v, %v", r, back, err)
		}
	})
}

// FuzzCanonicalFingerprint: a fingerprint a client names is accepted only
// as 20 or 32 bytes of hex, and its canonical form names the same bytes and
// is its own canonical form, so bridge lookups do not depend on hex case.
func FuzzCanonicalFingerprint(f *testing.F) {
	f.Add(DefaultBridgeFingerprint)
	f.Add(strings.ToLower(DefaultBridgeFingerprint))
	f.Add(strings.Repeat("aB", 32))
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseFingerprint(s)
		c, cerr := CanonicalFingerprint(s)
		if (err == nil) != (cerr == nil) {
			t.Fatalf("ParseFingerprint err %v, CanonicalFingerprint err %v", err, cerr)
		}
		if err != nil {
			return
		}
		if len(b) != 20 && len(b) != 32 {
			t.Fatalf("accepted %d bytes", len(b))
		}
		again, err := ParseFingerprint(c)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("canonical %q of %q parses to %x, %v; want %x", c, s, again, err, b)
		}
		if cc, _ := CanonicalFingerprint(c); cc != c || !strings.EqualFold(c, s) {
			t.Fatalf("canonical form %q of %q is not stable (%q)", c, s, cc)
		}
	})
}
