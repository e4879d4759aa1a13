package rendezvous

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// chromium156H2 is the Akamai HTTP/2 fingerprint of Debian's chromium
// 156.0.8078.108 opening a connection with a fetch() POST (measured by
// TestChromiumH2Fingerprint); Go's x/net/http2 client sends
// 2:0;4:4194304;5:16384;6:10485760|1073741824|0|a,m,p,s.
const chromium156H2 = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"

// ampPath is the path of an AMP cache GET (the rendezvous's AMP method).
const ampPath = "/c/s/broker.test/amp/client/MDAxMjM0NTY3ODk"

// chromiumFetchRecords runs headless Chromium on a page of srv (as
// page.test) whose script, with fetch(), POSTs pollBody to
// https://broker.test:PORT/client and GETs ampPath from cache.test: requests
// to other origins, so each on a connection of its own whose first request
// it is, as the rendezvous client's are. It returns those connections'
// records.
func chromiumFetchRecords(t *testing.T, srv *h2RecordServer) (post, get *h2Record) {
	t.Helper()
	srv.page = func(string) string {
		return fmt.Sprintf(`<!doctype html><html><body><script>
fetch("https://broker.test:%[1]d/client", {method: "POST", body: %[2]q}).then(r => r.text()).then(t => { document.title = t; });
fetch("https://cache.test:%[1]d%[3]s").then(r => r.text());
</script></body></html>`, srv.port(), pollBody, ampPath)
	}
	p, _ := testenv.StartChromium(t, "--disable-quic", "--ignore-certificate-errors",
		"--host-resolver-rules=MAP broker.test 127.0.0.1, MAP page.test 127.0.0.1, MAP cache.test 127.0.0.1",
		fmt.Sprintf("https://page.test:%d/", srv.port()))
	defer p.Kill()
	post = srv.waitFor(60*time.Second, func(_ int, r *h2Record) bool {
		return r.header(":method") == "POST" && r.header(":path") == "/client"
	})
	get = srv.waitFor(20*time.Second, func(_ int, r *h2Record) bool {
		return r.header(":method") == "GET" && r.header(":path") == ampPath
	})
	if post == nil || get == nil {
		t.Fatalf("chromium did not open a connection with POST /client and one with GET %s (%d connections); output:\n%s",
			ampPath, len(srv.recorded()), p.Output())
	}
	return post, get
}

// rendezvousRecord sends one poll through our default round tripper to
// srv and returns the record of its connection.
func rendezvousRecord(t *testing.T, srv *h2RecordServer, imitate string) *h2Record {
	t.Helper()
	return ourRecord(t, srv, imitate, "/client", func(rt http.RoundTripper, ctx context.Context) error {
		h, err := NewHTTP(fmt.Sprintf("https://broker.test:%d/", srv.port()), nil, rt)
		if err != nil {
			return err
		}
		_, err = h.Exchange(ctx, []byte(pollBody))
		return err
	})
}

// ampGetRecord sends a GET of ampPath to cache.test, as the AMP method
// does (its cache host names are subdomains, which the test certificate
// does not cover), and returns the record of its connection.
func ampGetRecord(t *testing.T, srv *h2RecordServer) *h2Record {
	t.Helper()
	return ourRecord(t, srv, "", ampPath, func(rt http.RoundTripper, ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://cache.test:%d%s", srv.port(), ampPath), nil)
		if err != nil {
			return err
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return err
		}
		_, err = readLimited(resp.Body)
		resp.Body.Close()
		return err
	})
}

// ourRecord runs send with our round tripper (dialling srv) and returns
// the record of the new connection whose first request was for path.
func ourRecord(t *testing.T, srv *h2RecordServer, imitate, path string, send func(http.RoundTripper, context.Context) error) *h2Record {
	t.Helper()
	before := len(srv.recorded())
	addr := srv.ln.Addr().String()
	rt, err := NewRoundTripper(TransportConfig{RootCAs: srv.pool, UTLSImitate: imitate,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := send(rt, ctx); err != nil {
		t.Fatal(err)
	}
	rec := srv.waitFor(10*time.Second, func(i int, r *h2Record) bool {
		return i >= before && r.header(":path") == path
	})
	if rec == nil {
		t.Fatal("no record of the rendezvous connection")
	}
	return rec
}

// pageHeaders are the headers of Chromium's fetch() that name the page
// that made it; the rendezvous client has no page and leaves them out.
var pageHeaders = map[string]bool{
	"origin": true, "referer": true, "sec-fetch-site": true, "sec-fetch-mode": true, "sec-fetch-dest": true,
}

// compareH2 fails t where ours differs from Chromium's connection opening:
// the Akamai fingerprint (SETTINGS ids, values and order, WINDOW_UPDATE,
// PRIORITY frames, pseudo-header order), the frame sequence with flags, the
// HEADERS priority (exclusive, dependency, weight), the DATA framing of the
// body, and the regular headers' order and values.
//
// installed is the major version of the Chromium that made chromium;
// versioned reports a difference in what changes between Chromium versions
// (testenv.VersionedErrorf).
func compareH2(t *testing.T, chromium, ours *h2Record, installed int, versioned func(string, ...any)) {
	t.Helper()
	if a, b := chromium.Akamai(), ours.Akamai(); a != b {
		t.Errorf("Akamai fingerprint: Chromium %s, ours %s", a, b)
	}
	// A SETTINGS ACK goes out when the server's SETTINGS have been read,
	// which races with the request for Chromium as for us (seen before
	// HEADERS, between HEADERS and DATA, and after the request).
	if a, b := withoutAck(chromium.Frames), withoutAck(ours.Frames); a != b {
		t.Errorf("frames: Chromium %s, ours %s", a, b)
	}
	// What a censor sees: the TLS records after the handshake. Both write
	// the preface (SETTINGS, WINDOW_UPDATE), the HEADERS and the DATA as
	// a record each; our HEADERS record is smaller by the page
	// headers we leave out.
	a, b := appRecords(chromium.TLSRecords), appRecords(ours.TLSRecords)
	same := len(a) == len(b) && len(a) >= 3
	for i := 0; same && i < len(a); i++ {
		if i == 2 {
			same = b[i] <= a[i]
		} else {
			same = a[i] == b[i]
		}
	}
	if !same {
		t.Errorf("TLS records (Finished, preface, HEADERS[, DATA]): Chromium %v, ours %v", a, b)
	}
	if chromium.HeadersPrio != ours.HeadersPrio {
		t.Errorf("HEADERS priority: Chromium %s, ours %s", chromium.HeadersPrio, ours.HeadersPrio)
	}
	if a, b := fmt.Sprint(chromium.BodyFrames), fmt.Sprint(ours.BodyFrames); a != b {
		t.Errorf("DATA frames: Chromium %s, ours %s", a, b)
	}
	var want []string
	for _, n := range chromium.headerNames() {
		if !pageHeaders[n] {
			want = append(want, n)
		}
	}
	if got := ours.headerNames(); !slices.Equal(got, want) {
		t.Errorf("header order:\nChromium %v\nours     %v", want, got)
	}
	for _, h := range chromium.Headers {
		if pageHeaders[h.Name] || h.Name == ":authority" {
			continue
		}
		want := h.Value
		errorf := t.Errorf
		switch h.Name {
		case "user-agent":
			// Headless mode names itself; a browser people use does not.
			want = strings.Replace(want, "HeadlessChrome/", "Chrome/", 1)
			// Only the major version differs between versions.
			want = strings.Replace(want, fmt.Sprintf("Chrome/%d.", installed), fmt.Sprintf("Chrome/%d.", testenv.ImitatedChromium), 1)
		case "sec-ch-ua":
			// Its GREASE brand changes with the version too.
			errorf = versioned
		}
		if got := ours.header(h.Name); got != want {
			errorf("header %s: Chromium %q, ours %q", h.Name, want, got)
		}
	}
	if !bytes.Equal(ours.Body, chromium.Body) {
		t.Errorf("body %q, Chromium's %q", ours.Body, chromium.Body)
	}
}

// TestChromiumH2Fingerprint points Debian's Chromium (fetch() POST from a
// page of another origin) and our rendezvous client at the same recording
// HTTP/2 server and requires the same connection opening from both.
func TestChromiumH2Fingerprint(t *testing.T) {
	if testenv.IsolateNetwork(t) {
		return
	}
	srv := startH2RecordServer(t, "broker.test", "page.test", "cache.test")
	chromium, chromiumGet := chromiumFetchRecords(t, srv)
	t.Logf("Chromium: %s, HEADERS priority %s, frames %v", chromium.Akamai(), chromium.HeadersPrio, chromium.Frames)
	if got := chromium.Akamai(); got != chromium156H2 {
		// Not an error in our client, but the constants in h2client and
		// here were measured with another Chromium: re-measure.
		t.Errorf("Chromium's fingerprint is now %s (was %s)", got, chromium156H2)
	}
	ours := rendezvousRecord(t, srv, "")
	t.Logf("ours:     %s, HEADERS priority %s, frames %v", ours.Akamai(), ours.HeadersPrio, ours.Frames)
	t.Logf("TLS records: Chromium %v\n             ours     %v", chromium.TLSRecords, ours.TLSRecords)
	installed, versioned := testenv.ChromiumMajor(t), testenv.VersionedErrorf(t)
	compareH2(t, chromium, ours, installed, versioned)

	// The AMP method's GET.
	ourGet := ampGetRecord(t, srv)
	t.Logf("GET: Chromium %s %s %v; ours %s %s %v", chromiumGet.Akamai(), chromiumGet.HeadersPrio, chromiumGet.Frames,
		ourGet.Akamai(), ourGet.HeadersPrio, ourGet.Frames)
	compareH2(t, chromiumGet, ourGet, installed, versioned)
}

// TestRendezvousH2Fingerprint checks every utls-imitate mode's HTTP/2
// opening against the recorded Chromium values, without the browser.
func TestRendezvousH2Fingerprint(t *testing.T) {
	srv := startH2RecordServer(t, "broker.test")
	for _, imitate := range []string{"", "hellochrome_auto", "hellofirefox_auto", "hellorandomizedalpn"} {
		rec := rendezvousRecord(t, srv, imitate)
		if got := rec.Akamai(); got != chromium156H2 {
			t.Errorf("%q: Akamai fingerprint %s, want %s", imitate, got, chromium156H2)
		}
		if rec.HeadersPrio != "1:0:220" || withoutAck(rec.Frames) != "[SETTINGS WINDOW_UPDATE HEADERS[0x24] DATA[0x1]]" {
			t.Errorf("%q: HEADERS priority %s, frames %v", imitate, rec.HeadersPrio, rec.Frames)
		}
		if rec.header("priority") != "u=1, i" || rec.header("accept-encoding") != "gzip, deflate, br, zstd" {
			t.Errorf("%q: headers %v", imitate, rec.Headers)
		}
	}
}

func withoutAck(frames []string) string {
	var out []string
	for _, f := range frames {
		if f != "SETTINGS[0x1]" {
			out = append(out, f)
		}
	}
	return fmt.Sprint(out)
}

// appRecords returns the lengths of the client's encrypted records
// (outer type 23), leaving out one of 26 bytes: a 9-byte frame, the
// SETTINGS ACK, whose timing varies (see compareH2).
func appRecords(records []string) []int {
	var out []int
	ackSeen := false
	for _, r := range records {
		var typ, n int
		fmt.Sscanf(r, "%d:%d", &typ, &n)
		if typ != 23 {
			continue
		}
		if n == 26 && !ackSeen {
			ackSeen = true
			continue
		}
		out = append(out, n)
	}
	return out
}
