package proxy

import (
	"embed"
	"encoding/json"
	"net/http"
	"time"
)

// The status page is static HTML, CSS and script that poll status.json; no
// value is ever rendered into markup on the server, so nothing the broker or
// a client sends can inject into the page.
//
//go:embed statuspage/index.html statuspage/status.css statuspage/status.js
var statusFiles embed.FS

// Status is the snapshot the status page shows, served as status.json.
type Status struct {
	// NAT is the proxy's NAT type as last probed.
	NAT string `json:"nat"`
	// Active is the number of clients being relayed now.
	Active int64 `json:"active"`
	// Capacity is the configured client limit (0 = unlimited).
	Capacity int `json:"capacity"`
	// Connections is the number of clients relayed since start.
	Connections int64 `json:"connections"`
	// Failed counts matched clients that were never connected.
	Failed int64 `json:"failed"`
	// Polls and PollErrors count broker polls and failed ones.
	Polls      int64 `json:"polls"`
	PollErrors int64 `json:"poll_errors"`
	// BytesUp is client→relay traffic, BytesDown relay→client.
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
	// UptimeSeconds counts from the creation of the status handler.
	UptimeSeconds int64 `json:"uptime_seconds"`
}

// status returns the current totals; start is when the page was set up.
func (p *Proxy) status(start time.Time) Status {
	st := &p.stats
	return Status{
		NAT:           p.NAT().String(),
		Active:        st.Active.Load(),
		Capacity:      p.cfg.Capacity,
		Connections:   st.Connections.Load(),
		Failed:        st.Failed.Load(),
		Polls:         st.Polls.Load(),
		PollErrors:    st.PollErrors.Load(),
		BytesUp:       st.BytesUp.Load(),
		BytesDown:     st.BytesDown.Load(),
		UptimeSeconds: int64(time.Since(start) / time.Second),
	}
}

// StatusPage returns a handler for the proxy's status page: "/" (HTML),
// "/status.css", "/status.js" and "/status.json". Other paths get 404, so
// it can be mounted at "/" next to the metrics endpoint. Only GET and HEAD
// are accepted; requests have no body to limit.
func (p *Proxy) StatusPage() http.Handler {
	start := time.Now()
	mux := http.NewServeMux()
	static := func(name, ctype string) http.HandlerFunc {
		body, err := statusFiles.ReadFile("statuspage/" + name)
		return func(w http.ResponseWriter, r *http.Request) {
			if err != nil { // cannot happen: the files are embedded at build time
				http.Error(w, "status page unavailable", http.StatusInternalServerError)
				return
			}
			securityHeaders(w.Header())
			w.Header().Set("Content-Type", ctype)
			w.Write(body)
		}
	}
	mux.HandleFunc("GET /{$}", static("index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /status.css", static("status.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /status.js", static("status.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(p.status(start))
	})
	return mux
}

// securityHeaders keeps the page self-contained: no third-party loads, no
// framing, no caching of live numbers.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
}
