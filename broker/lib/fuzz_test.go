package broker

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzHandlers feeds arbitrary bodies and AMP paths to the HTTP API: every
// request must get a well-formed response (200 or 400), never a panic or a
// 500, and no proxy may be left behind.
func FuzzHandlers(f *testing.F) {
	f.Add("/client", []byte("1.0\n"+`{"offer":"x","nat":"unknown"}`))
	f.Add("/client", []byte(testOffer))
	f.Add("/proxy", []byte(`{"Sid":"s","Version":"1.3","NAT":"restricted","AcceptedRelayPattern":"a$"}`))
	f.Add("/answer", []byte(`{"Version":"1.3","Sid":"s","Answer":"a=candidate"}`))
	f.Add("/amp/client/0abc/MS4wCnt9", []byte(nil))
	b, err := New(Config{AllowedRelayPattern: "snowflake.torproject.net$", ProxyPollTimeout: time.Millisecond, ClientTimeout: time.Millisecond, ClientWait: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	h := b.Handler()
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		switch {
		case path == "/client", path == "/proxy", path == "/answer", strings.HasPrefix(path, "/amp/client/"):
		default:
			return
		}
		if _, err := url.ParseRequestURI(path); err != nil || strings.ContainsAny(path, " ?#") {
			return // not a request line a client could send
		}
		method := http.MethodPost
		if strings.HasPrefix(path, "/amp/") {
			method = http.MethodGet
		}
		req := httptest.NewRequest(method, path, strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if c := rec.Code; c != 200 && c != 400 && c != 503 && c != 504 && c != 301 && c != 307 && c != 308 {
			t.Fatalf("%s %q: status %d", path, body, c)
		}
		if b.Waiting() != 0 {
			t.Fatalf("proxy left waiting after %s", path)
		}
	})
}
