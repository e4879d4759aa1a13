package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestStatusPage(t *testing.T) {
	// URLs are never dialled: the proxy is not run.
	p, err := New(Config{BrokerURL: "http://127.0.0.1:1/", RelayURL: "ws://127.0.0.1:1/", Capacity: 7})
	if err != nil {
		t.Fatal(err)
	}
	p.stats.Active.Store(3)
	p.stats.Connections.Store(42)
	p.stats.BytesUp.Store(1000)
	p.stats.BytesDown.Store(123456)
	p.stats.Polls.Store(9)
	srv := httptest.NewServer(p.StatusPage())
	defer srv.Close()

	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/", "text/html", `<script src="status.js">`},
		{"/status.css", "text/css", "grid-template-columns"},
		{"/status.js", "text/javascript", `fetch("status.json"`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := get(http.MethodGet, tc.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
				t.Errorf("Content-Type %q, want %q", ct, tc.ctype)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
		})
	}

	t.Run("status.json", func(t *testing.T) {
		resp, body := get(http.MethodGet, "/status.json")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		var st Status
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		want := Status{NAT: "unknown", Active: 3, Capacity: 7, Connections: 42, Polls: 9,
			BytesUp: 1000, BytesDown: 123456, UptimeSeconds: st.UptimeSeconds}
		if st != want {
			t.Errorf("got %+v, want %+v", st, want)
		}
		// Every key the page script reads must be in the JSON.
		_, js := get(http.MethodGet, "/status.js")
		var m map[string]any
		json.Unmarshal([]byte(body), &m)
		for k := range m {
			if !strings.Contains(js, "st."+k) {
				t.Errorf("status.js does not show %q", k)
			}
		}
	})

	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/nope"},
		{http.MethodGet, "/statuspage/index.html"},
		{http.MethodPost, "/"},
		{http.MethodPost, "/status.json"},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			resp, _ := get(tc.method, tc.path)
			if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("status %d, want 404 or 405", resp.StatusCode)
			}
		})
	}
}

// BenchmarkStatusJSON measures one refresh of the status page (it polls
// status.json every second per open page).
func BenchmarkStatusJSON(b *testing.B) {
	p, err := New(Config{BrokerURL: "http://127.0.0.1:1/", RelayURL: "ws://127.0.0.1:1/"})
	if err != nil {
		b.Fatal(err)
	}
	h := p.StatusPage()
	req := httptest.NewRequest(http.MethodGet, "/status.json", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}
