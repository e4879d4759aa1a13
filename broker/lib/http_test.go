package broker

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
)

// answerCase is a request body and what the broker must answer it: the
// status and, where want is set, the body.
type answerCase struct {
	name   string
	body   string
	status int
	want   string
}

// check posts the case's body to url and compares the answer.
func (c answerCase) check(t *testing.T, url string) {
	t.Helper()
	r := post(t, url, c.body)
	if r.status != c.status || (c.want != "" && r.body != c.want) {
		t.Fatalf("got %d %s, want %d %s", r.status, r.body, c.status, c.want)
	}
}

func TestClientErrors(t *testing.T) {
	_, srv := newTestBroker(t, nil)
	tests := []struct {
		name string
		body string
		want string
	}{
		{"no newline", `{"offer":"x"`, ""}, // legacy path: see TestLegacyClient
		{"wrong version", "2.0\n{}", `{"error":"unsupported message version"}`},
		{"version only", "1.0", `{"error":"unsupported message version"}`},
		{"empty body", "", `{"error":"unsupported message version"}`},
		{"malformed json", "1.0\n{", `{"error":"unexpected end of JSON input"}`},
		{"no offer", "1.0\n{}", `{"error":"no supplied offer"}`},
		{"invalid nat", "1.0\n" + `{"offer":"x","nat":"cone"}`, `{"error":"invalid NAT type"}`},
		{"bad fingerprint", "1.0\n" + `{"offer":"x","fingerprint":"xyz"}`, `{"error":"cannot decode fingerprint"}`},
		{"short fingerprint", "1.0\n" + `{"offer":"x","fingerprint":"abcd"}`, `{"error":"cannot decode fingerprint"}`},
		{"unknown bridge", "1.0\n" + `{"offer":"x","fingerprint":"8838024498816A039FCBBAB14E6F40A0843051FA"}`,
			`{"error":"bridge with requested fingerprint is unknown to the broker"}`},
		{"no proxies", clientPollBody(t, nat.Unknown), `{"error":"no snowflake proxies currently available"}`},
		{"no proxies, unrestricted", clientPollBody(t, nat.Unrestricted), `{"error":"no snowflake proxies currently available"}`},
	}
	for _, tt := range tests {
		if tt.want == "" {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			answerCase{tt.name, tt.body, http.StatusOK, tt.want}.check(t, srv.URL+"/client")
		})
	}
}

func TestProxyErrors(t *testing.T) {
	_, srv := newTestBroker(t, nil)
	tests := []answerCase{
		{"malformed", `{"Sid":`, 400, ""},
		{"not json", `hello`, 400, ""},
		{"version 2", `{"Sid":"s","Version":"2.0","AcceptedRelayPattern":"snowflake.torproject.net$"}`, 400, ""},
		{"no version", `{"Sid":"s","AcceptedRelayPattern":"snowflake.torproject.net$"}`, 400, ""},
		{"no sid", `{"Version":"1.3","AcceptedRelayPattern":"snowflake.torproject.net$"}`, 400, ""},
		{"sid too long", proxyPollBody(t, strings.Repeat("s", messages.MaxSidLength+1), nat.Unrestricted, 0, "snowflake.torproject.net$"), 400, ""},
		{"bad nat", `{"Sid":"s","Version":"1.3","NAT":"cone","AcceptedRelayPattern":"snowflake.torproject.net$"}`, 400, ""},
		{"no pattern", `{"Sid":"s","Version":"1.3","NAT":"restricted"}`, 200,
			`{"Status":"incorrect relay pattern","Offer":"","NAT":"","NextPoll":3600000,"RelayURL":""}`},
		{"narrower pattern", proxyPollBody(t, "s", nat.Restricted, 0, "a.snowflake.torproject.net$"), 200,
			`{"Status":"incorrect relay pattern","Offer":"","NAT":"","NextPoll":3600000,"RelayURL":""}`},
		{"exact pattern", proxyPollBody(t, "s", nat.Restricted, 0, "^snowflake.torproject.net$"), 200,
			`{"Status":"incorrect relay pattern","Offer":"","NAT":"","NextPoll":3600000,"RelayURL":""}`},
		{"wider pattern, no match", proxyPollBody(t, "s", nat.Restricted, 0, "torproject.net$"), 200,
			`{"Status":"no match","Offer":"","NAT":"","NextPoll":20000,"RelayURL":""}`},
		{"unknown type accepted", `{"Sid":"s","Version":"1.3","Type":"bloco","NAT":"","Clients":-3,"AcceptedRelayPattern":"snowflake.torproject.net$"}`, 200,
			`{"Status":"no match","Offer":"","NAT":"","NextPoll":20000,"RelayURL":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			tt.check(t, srv.URL+"/proxy")
			// Polls that may wait are held for the hold time. (Refusals
			// are immediate, but timing that would flake on a loaded
			// machine; TestMaxWaitingProxies bounds it loosely.)
			if strings.Contains(tt.want, "no match") && time.Since(start) < testHold {
				t.Fatalf("answered after %v, before the hold of %v", time.Since(start), testHold)
			}
		})
	}
}

func TestAnswerErrors(t *testing.T) {
	_, srv := newTestBroker(t, nil)
	tests := []answerCase{
		{"malformed", `{`, 400, ""},
		{"version 2", `{"Version":"2.0","Sid":"s","Answer":"a=candidate"}`, 400, ""},
		{"no sid", `{"Version":"1.3","Answer":"a=candidate"}`, 400, ""},
		{"no answer", `{"Version":"1.3","Sid":"s"}`, 400, ""},
		{"no candidate", `{"Version":"1.3","Sid":"s","Answer":"{\"type\":\"answer\",\"sdp\":\"v=0\"}"}`, 400, ""},
		{"unknown sid", `{"Version":"1.3","Sid":"nobody","Answer":` + jsonString(testAnswer) + `}`, 200, `{"Status":"client gone"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, srv.URL+"/answer")
		})
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestOversizeBodies(t *testing.T) {
	_, srv := newTestBroker(t, nil)
	big := "1.0\n" + `{"offer":"` + strings.Repeat("a", messages.MaxBodySize) + `"}`
	for _, path := range []string{"/client", "/proxy", "/answer"} {
		if r := post(t, srv.URL+path, big); r.status != http.StatusBadRequest {
			t.Errorf("%s: oversize body got %d, want 400", path, r.status)
		}
	}
	// Exactly at the limit is still read (and then judged on content).
	atLimit := "1.0\n" + `{"offer":"` + strings.Repeat("a", messages.MaxBodySize-len("1.0\n{\"offer\":\"\"}")) + `"}`
	if len(atLimit) != messages.MaxBodySize {
		t.Fatalf("test body is %d bytes", len(atLimit))
	}
	r := post(t, srv.URL+"/client", atLimit)
	if r.status != 200 || r.body != `{"error":"no snowflake proxies currently available"}` {
		t.Errorf("body at limit: %d %s", r.status, r.body)
	}
}

func TestCORSAndOptions(t *testing.T) {
	_, srv := newTestBroker(t, nil)
	for _, path := range []string{"/client", "/proxy", "/answer", "/debug", "/amp/client/0x/y", "/metrics"} {
		r := do(t, http.MethodOptions, srv.URL+path, nil, nil)
		if r.status != 200 || r.body != "" {
			t.Errorf("OPTIONS %s = %d %q", path, r.status, r.body)
		}
		if r.header.Get("Access-Control-Allow-Origin") != "*" ||
			r.header.Get("Access-Control-Allow-Headers") != "Origin, X-Session-ID" {
			t.Errorf("OPTIONS %s: CORS headers %v", path, r.header)
		}
	}
	r := post(t, srv.URL+"/client", "2.0\n")
	if r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("POST /client: no CORS header")
	}
}

func TestMiscEndpoints(t *testing.T) {
	b, srv := newTestBroker(t, nil)
	r := do(t, http.MethodGet, srv.URL+"/robots.txt", nil, nil)
	if r.status != 200 || r.body != "User-agent: *\nDisallow: /\n" {
		t.Errorf("robots.txt = %d %q", r.status, r.body)
	}
	if r := do(t, http.MethodGet, srv.URL+"/metrics", nil, nil); r.status != 404 {
		t.Errorf("/metrics without a log = %d", r.status)
	}
	if r := do(t, http.MethodGet, srv.URL+"/nonexistent", nil, nil); r.status != 404 {
		t.Errorf("/nonexistent = %d", r.status)
	}
	// Two proxies waiting: /debug and /prometheus show them.
	p1 := startProxyPoll(t, srv, "a", nat.Unrestricted, 0)
	p2 := startProxyPoll(t, srv, "b", nat.Restricted, 0)
	waitWaiting(t, b, 2)
	r = do(t, http.MethodGet, srv.URL+"/debug", nil, nil)
	for _, want := range []string{"current snowflakes available: 2\n", "\tstandalone proxies: 2\n",
		"\twebext proxies: 0\n", "\trestricted: 1\n", "\tunrestricted: 1\n"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/debug lacks %q:\n%s", want, r.body)
		}
	}
	r = do(t, http.MethodGet, srv.URL+"/prometheus", nil, nil)
	for _, want := range []string{
		`snowflake_available_proxies{nat="unrestricted",type="standalone"} 1`,
		`snowflake_rounded_proxy_poll_with_relay_url_extension_total{nat="restricted",type="standalone"} 8`,
		// Both polls come from 127.0.0.1: one distinct address.
		`snowflake_proxy_total{cc="??",nat=`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/prometheus lacks %q", want)
		}
	}
	<-p1
	<-p2
	// Once the polls have ended, the pairs seen stay exported at 0, as
	// upstream's gauges do: "no proxy waiting" is a value that alerts and
	// dashboards can see, not a missing series.
	waitWaiting(t, b, 0)
	r = do(t, http.MethodGet, srv.URL+"/prometheus", nil, nil)
	for _, want := range []string{
		`snowflake_available_proxies{nat="unrestricted",type="standalone"} 0`,
		`snowflake_available_proxies{nat="restricted",type="standalone"} 0`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/prometheus lacks %q once no proxy waits:\n%s", want, r.body)
		}
	}
}
