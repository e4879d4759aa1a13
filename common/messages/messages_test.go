package messages

import (
	"errors"
	"strings"
	"testing"

	"github.com/snowflake-go/snowflake/common/nat"
)

const offerEnvelope = `{"type":"offer","sdp":"v=0\r\na=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\n"}`

func TestDecodeClientPollRequest(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		want   *ClientPollRequest
		reason string
	}{
		{"upstream", "1.0\n" + `{"offer":"X","nat":"unknown","fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}`,
			&ClientPollRequest{Offer: "X", NAT: nat.Unknown, Fingerprint: DefaultBridgeFingerprint}, ""},
		{"nat absent, fingerprint absent", "1.0\n" + `{"offer":"X"}`,
			&ClientPollRequest{Offer: "X", NAT: nat.Unknown, Fingerprint: DefaultBridgeFingerprint}, ""},
		{"keys case-insensitive", "1.0\n" + `{"OFFER":"X","Nat":"unrestricted"}`,
			&ClientPollRequest{Offer: "X", NAT: nat.Unrestricted, Fingerprint: DefaultBridgeFingerprint}, ""},
		{"restricted, lower-case 32-byte fingerprint", "1.0\n" + `{"offer":"X","nat":"restricted","fingerprint":"` + strings.Repeat("ab", 32) + `"}`,
			&ClientPollRequest{Offer: "X", NAT: nat.Restricted, Fingerprint: strings.Repeat("ab", 32)}, ""},
		{"unknown keys ignored", "1.0\n" + `{"offer":"X","extra":[1,2]}`,
			&ClientPollRequest{Offer: "X", NAT: nat.Unknown, Fingerprint: DefaultBridgeFingerprint}, ""},
		{"no newline", `{"offer":"X"}`, nil, ErrStrUnsupportedVersion},
		{"empty", "", nil, ErrStrUnsupportedVersion},
		{"wrong version", "2.0\n{}", nil, ErrStrUnsupportedVersion},
		{"version with space", "1.0 \n{}", nil, ErrStrUnsupportedVersion},
		{"crlf", "1.0\r\n{}", nil, ErrStrUnsupportedVersion},
		{"no offer", "1.0\n{}", nil, ErrStrNoOffer},
		{"bad nat", "1.0\n" + `{"offer":"X","nat":"symmetric"}`, nil, ErrStrInvalidNAT},
		{"bad hex", "1.0\n" + `{"offer":"X","fingerprint":"zz"}`, nil, ErrStrBadFingerprint},
		{"short fingerprint", "1.0\n" + `{"offer":"X","fingerprint":"abcd"}`, nil, ErrStrBadFingerprint},
		{"malformed json", "1.0\n{", nil, "unexpected end of JSON input"},
		{"wrong type", "1.0\n" + `{"offer":5}`, nil, "json: cannot unmarshal number into Go struct field clientPollRequestJSON.offer of type string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeClientPollRequest([]byte(tt.body))
			if tt.reason != "" {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("err = %v, want DecodeError", err)
				}
				if Reason(err) != tt.reason {
					t.Fatalf("reason = %q, want %q", Reason(err), tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != *tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestClientPollRequestEncode(t *testing.T) {
	r := &ClientPollRequest{Offer: offerEnvelope, NAT: nat.Restricted}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "1.0\n" + `{"offer":"{\"type\":\"offer\",\"sdp\":\"v=0\\r\\na=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\\r\\n\"}","nat":"restricted","fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	back, err := DecodeClientPollRequest(b)
	if err != nil || back.Offer != offerEnvelope || back.NAT != nat.Restricted {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if _, err := (&ClientPollRequest{}).Encode(); err == nil {
		t.Fatal("empty offer encoded")
	}
	if _, err := (&ClientPollRequest{Offer: "x", NAT: "bogus"}).Encode(); err == nil {
		t.Fatal("bad NAT encoded")
	}
}

func TestClientPollResponse(t *testing.T) {
	tests := []struct {
		r    ClientPollResponse
		want string
	}{
		{ClientPollResponse{Answer: "A"}, `{"answer":"A"}`},
		{ClientPollResponse{Error: ErrStrNoProxies}, `{"error":"no snowflake proxies currently available"}`},
		{ClientPollResponse{Error: ErrStrTimedOut}, `{"error":"timed out waiting for answer!"}`},
	}
	for _, tt := range tests {
		b, err := tt.r.Encode()
		if err != nil || string(b) != tt.want {
			t.Errorf("Encode = %s, %v; want %s", b, err, tt.want)
		}
		back, err := DecodeClientPollResponse(b)
		if err != nil || *back != tt.r {
			t.Errorf("Decode(%s) = %+v, %v", b, back, err)
		}
	}
	for _, bad := range []string{"", "{}", `{"answer":""}`, "[", `{"answer":1}`} {
		if _, err := DecodeClientPollResponse([]byte(bad)); err == nil {
			t.Errorf("Decode(%q) succeeded", bad)
		}
	}
}

func TestDecodeProxyPollRequest(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		want   *ProxyPollRequest
		reason string
	}{
		{"upstream 2.13", `{"Sid":"q4Yh2x","Version":"1.3","Type":"standalone","NAT":"restricted","Clients":8,"AcceptedRelayPattern":"snowflake.torproject.net$"}`,
			&ProxyPollRequest{Sid: "q4Yh2x", Version: "1.3", Type: "standalone", NAT: nat.Restricted, Clients: 8, AcceptedRelayPattern: "snowflake.torproject.net$"}, ""},
		{"no pattern (pre-2.3)", `{"Sid":"s","Version":"1.2","Type":"webext","NAT":"unrestricted","Clients":0}`,
			&ProxyPollRequest{Sid: "s", Version: "1.2", Type: "webext", NAT: nat.Unrestricted, NoRelayPattern: true}, ""},
		{"empty pattern is present", `{"Sid":"s","Version":"1.0","AcceptedRelayPattern":""}`,
			&ProxyPollRequest{Sid: "s", Version: "1.0", NAT: nat.Unknown}, ""},
		{"lower-case keys, negative clients", `{"sid":"s","version":"1.9","nat":"","clients":-5,"acceptedrelaypattern":"x$"}`,
			&ProxyPollRequest{Sid: "s", Version: "1.9", NAT: nat.Unknown, AcceptedRelayPattern: "x$"}, ""},
		{"unknown type kept", `{"Sid":"s","Version":"1","Type":"bloco","AcceptedRelayPattern":"x$"}`,
			&ProxyPollRequest{Sid: "s", Version: "1", Type: "bloco", NAT: nat.Unknown, AcceptedRelayPattern: "x$"}, ""},
		{"version 2", `{"Sid":"s","Version":"2.0"}`, nil, ErrStrUnknownProxyVersion},
		{"version missing", `{"Sid":"s"}`, nil, ErrStrUnknownProxyVersion},
		{"version 10.1", `{"Sid":"s","Version":"10.1"}`, nil, ErrStrUnknownProxyVersion},
		{"no sid", `{"Version":"1.3"}`, nil, ErrStrNoSid},
		{"sid at limit", `{"Sid":"` + strings.Repeat("s", MaxSidLength) + `","Version":"1.3"}`,
			&ProxyPollRequest{Sid: strings.Repeat("s", MaxSidLength), Version: "1.3", NAT: nat.Unknown, NoRelayPattern: true}, ""},
		{"sid too long", `{"Sid":"` + strings.Repeat("s", MaxSidLength+1) + `","Version":"1.3"}`, nil, ErrStrSidTooLong},
		// The limit is on the decoded Sid: six bytes of escape are one byte.
		{"escaped sid at limit", `{"Sid":"` + strings.Repeat(`\u0073`, MaxSidLength) + `","Version":"1.3"}`,
			&ProxyPollRequest{Sid: strings.Repeat("s", MaxSidLength), Version: "1.3", NAT: nat.Unknown, NoRelayPattern: true}, ""},
		{"bad nat", `{"Sid":"s","Version":"1.3","NAT":"full cone"}`, nil, ErrStrInvalidNAT},
		{"malformed", `{"Sid":`, nil, "unexpected end of JSON input"},
		{"not object", `"x"`, nil, "json: cannot unmarshal string into Go value of type messages.proxyPollRequestJSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeProxyPollRequest([]byte(tt.body))
			if tt.reason != "" {
				if err == nil || Reason(err) != tt.reason {
					t.Fatalf("err = %v, want reason %q", err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != *tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestProxyPollRequestEncode(t *testing.T) {
	r := &ProxyPollRequest{Sid: "q4Yh2x", Type: "standalone", NAT: nat.Restricted, Clients: 8, AcceptedRelayPattern: "snowflake.torproject.net$"}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Sid":"q4Yh2x","Version":"1.3","Type":"standalone","NAT":"restricted","Clients":8,"AcceptedRelayPattern":"snowflake.torproject.net$"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	r = &ProxyPollRequest{Sid: "s", NoRelayPattern: true}
	b, _ = r.Encode()
	if want := `{"Sid":"s","Version":"1.3","Type":"","NAT":"unknown","Clients":0}`; string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	// An empty pattern is still emitted: only NoRelayPattern omits it.
	b, _ = (&ProxyPollRequest{Sid: "s"}).Encode()
	if !strings.Contains(string(b), `"AcceptedRelayPattern":""`) {
		t.Fatalf("empty pattern omitted: %s", b)
	}
}

func TestProxyPollResponse(t *testing.T) {
	tests := []struct {
		name string
		r    ProxyPollResponse
		want string
	}{
		{"match", ProxyPollResponse{Status: StatusClientMatch, Offer: "O", NAT: nat.Unrestricted, NextPoll: 20000, RelayURL: "wss://snowflake.torproject.net/"},
			`{"Status":"client match","Offer":"O","NAT":"unrestricted","NextPoll":20000,"RelayURL":"wss://snowflake.torproject.net/"}`},
		{"no match", ProxyPollResponse{Status: StatusNoMatch, NextPoll: 20000},
			`{"Status":"no match","Offer":"","NAT":"","NextPoll":20000,"RelayURL":""}`},
		{"pattern", ProxyPollResponse{Status: StatusIncorrectRelayPattern, NextPoll: 3600000},
			`{"Status":"incorrect relay pattern","Offer":"","NAT":"","NextPoll":3600000,"RelayURL":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.r.Encode()
			if err != nil || string(b) != tt.want {
				t.Fatalf("Encode = %s, %v; want %s", b, err, tt.want)
			}
			back, err := DecodeProxyPollResponse(b)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.r
			if want.NAT == "" {
				want.NAT = nat.Unknown
			}
			if *back != want {
				t.Fatalf("round trip %+v, want %+v", back, want)
			}
		})
	}
	bad := map[string]string{
		"no status":        `{"Offer":"x"}`,
		"match w/o offer":  `{"Status":"client match","Offer":""}`,
		"bad nat":          `{"Status":"no match","NAT":"x"}`,
		"malformed":        `{`,
		"nextpoll as text": `{"Status":"no match","NextPoll":"5"}`,
	}
	for name, b := range bad {
		if _, err := DecodeProxyPollResponse([]byte(b)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	// 2.5 brokers omit NextPoll; a non-match offer is cleared.
	r, err := DecodeProxyPollResponse([]byte(`{"Status":"no match","Offer":"stale"}`))
	if err != nil || r.Offer != "" || r.NextPoll != 0 || r.NAT != nat.Unknown {
		t.Fatalf("got %+v, %v", r, err)
	}
}

func TestAnswerRequest(t *testing.T) {
	r := &AnswerRequest{Sid: "s", Answer: "A"}
	b, err := r.Encode()
	if want := `{"Version":"1.3","Sid":"s","Answer":"A"}`; err != nil || string(b) != want {
		t.Fatalf("Encode = %s, %v", b, err)
	}
	back, err := DecodeAnswerRequest(b)
	if err != nil || *back != (AnswerRequest{Version: "1.3", Sid: "s", Answer: "A"}) {
		t.Fatalf("Decode = %+v, %v", back, err)
	}
	tests := map[string]string{
		`{"Version":"2.0","Sid":"s","Answer":"A"}`: ErrStrUnknownProxyVersion,
		`{"Version":"1.3","Answer":"A"}`:           ErrStrNoSid,
		`{"Version":"1.3","Sid":"s"}`:              ErrStrNoAnswer,
		`{"Version":"1.3","Sid":"s","Answer":""}`:  ErrStrNoAnswer,
		`[]`: "json: cannot unmarshal array into Go value of type messages.answerRequestJSON",
	}
	for body, reason := range tests {
		_, err := DecodeAnswerRequest([]byte(body))
		if err == nil || Reason(err) != reason {
			t.Errorf("Decode(%s) = %v, want reason %q", body, err, reason)
		}
	}
}

func TestAnswerResponse(t *testing.T) {
	for _, s := range []string{StatusSuccess, StatusClientGone} {
		b, err := (&AnswerResponse{Status: s}).Encode()
		if err != nil || string(b) != `{"Status":"`+s+`"}` {
			t.Fatalf("Encode = %s, %v", b, err)
		}
		r, err := DecodeAnswerResponse(b)
		if err != nil || r.Status != s {
			t.Fatalf("Decode = %+v, %v", r, err)
		}
	}
	for _, bad := range []string{`{}`, `{"Status":""}`, `nope`} {
		if _, err := DecodeAnswerResponse([]byte(bad)); err == nil {
			t.Errorf("Decode(%s) succeeded", bad)
		}
	}
}

func TestSessionDescription(t *testing.T) {
	d := SessionDescription{Type: "offer", SDP: "v=0\r\n"}
	s, err := d.Encode()
	if want := `{"type":"offer","sdp":"v=0\r\n"}`; err != nil || s != want {
		t.Fatalf("Encode = %s, %v", s, err)
	}
	back, err := DecodeSessionDescription(s)
	if err != nil || back != d {
		t.Fatalf("Decode = %+v, %v", back, err)
	}
	if _, err := (SessionDescription{Type: "bogus"}).Encode(); err == nil {
		t.Fatal("bad type encoded")
	}
	bad := []string{``, `{}`, `{"type":"offer"}`, `{"sdp":"x"}`, `{"type":"weird","sdp":"x"}`, `{"type":1,"sdp":"x"}`}
	for _, b := range bad {
		if _, err := DecodeSessionDescription(b); err == nil {
			t.Errorf("Decode(%q) succeeded", b)
		}
	}
	// An empty SDP with both keys present is accepted, as upstream does.
	if _, err := DecodeSessionDescription(`{"type":"answer","sdp":""}`); err != nil {
		t.Fatal(err)
	}
}

func TestFingerprint(t *testing.T) {
	tests := []struct {
		in, canon string
		ok        bool
	}{
		{DefaultBridgeFingerprint, DefaultBridgeFingerprint, true},
		{strings.ToLower(DefaultBridgeFingerprint), DefaultBridgeFingerprint, true},
		{strings.Repeat("0a", 32), strings.Repeat("0A", 32), true},
		{"", "", false},
		{"2B28", "", false},
		{strings.Repeat("0", 41), "", false},
		{strings.Repeat("g", 40), "", false},
	}
	for _, tt := range tests {
		got, err := CanonicalFingerprint(tt.in)
		if (err == nil) != tt.ok || got != tt.canon {
			t.Errorf("CanonicalFingerprint(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func TestNormalizeProxyType(t *testing.T) {
	for in, want := range map[string]string{"standalone": "standalone", "webext": "webext", "badge": "badge",
		"iptproxy": "iptproxy", "": "unknown", "Standalone": "unknown", "bloco": "unknown"} {
		if got := NormalizeProxyType(in); got != want {
			t.Errorf("NormalizeProxyType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsLegacyClientPoll(t *testing.T) {
	if !IsLegacyClientPoll([]byte(offerEnvelope)) || IsLegacyClientPoll([]byte("1.0\n{}")) || IsLegacyClientPoll(nil) {
		t.Fatal("IsLegacyClientPoll misclassifies")
	}
}
