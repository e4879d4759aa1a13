package amp

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestCacheURL(t *testing.T) {
	long := strings.Repeat("a", 60) + ".example"
	tests := []struct {
		pub, cache, want string
	}{
		{"https://snowflake-broker.torproject.net/amp/client/0abc/MS4w", "https://cdn.ampproject.org/",
			"https://snowflake--broker-torproject-net.cdn.ampproject.org/c/s/snowflake-broker.torproject.net/amp/client/0abc/MS4w"},
		{"http://example.com/x?q=1#f", "https://cdn.ampproject.org",
			"https://example-com.cdn.ampproject.org/c/example.com/x?q=1#f"},
		{"https://example.com:8443/", "https://cache.example/base/",
			"https://example-com.cache.example/base/c/s/example.com:8443/"},
		// "--" at positions 3-4 after doubling gets wrapped in 0-...-0.
		{"https://ab-c.example/", "https://cdn.ampproject.org/",
			"https://0-ab--c-example-0.cdn.ampproject.org/c/s/ab-c.example/"},
		// Internationalised names: Unicode form transformed, back to punycode
		// (xn--bcher-example-wob = punycode of "bücher-example", checked with
		// Python's codec).
		{"https://xn--bcher-kva.example/", "https://cdn.ampproject.org/",
			"https://xn--bcher-example-wob.cdn.ampproject.org/c/s/xn--bcher-kva.example/"},
		// Too long for one label: hash form.
		{"https://" + long + "/", "https://cdn.ampproject.org/",
			"https://" + hashPrefix(long) + ".cdn.ampproject.org/c/s/" + long + "/"},
	}
	for _, tt := range tests {
		got, err := CacheURL(mustParse(t, tt.pub), mustParse(t, tt.cache), "c")
		if err != nil {
			t.Errorf("CacheURL(%s): %v", tt.pub, err)
			continue
		}
		if got.String() != tt.want {
			t.Errorf("CacheURL(%s)\n got %s\nwant %s", tt.pub, got, tt.want)
		}
	}
	if len(hashPrefix(long)) != 52 {
		t.Errorf("hash prefix length %d, want 52", len(hashPrefix(long)))
	}
	for _, bad := range []string{"ftp://example.com/", "https:///x"} {
		if _, err := CacheURL(mustParse(t, bad), mustParse(t, "https://cdn.ampproject.org/"), "c"); err == nil {
			t.Errorf("CacheURL(%s) succeeded", bad)
		}
	}
}

func TestPathRoundTrip(t *testing.T) {
	req := []byte("1.0\n{\"offer\":\"x\",\"nat\":\"unknown\"}")
	p := EncodePath(req)
	if p[0] != '0' || len(strings.SplitN(p, "/", 2)[0]) != 13 {
		t.Fatalf("unexpected path shape %q", p)
	}
	if p2 := EncodePath(req); p2 == p {
		t.Fatal("cache breaker did not change")
	}
	got, err := DecodePath(p)
	if err != nil || !bytes.Equal(got, req) {
		t.Fatalf("DecodePath = %q, %v", got, err)
	}
}

func TestDecodePath(t *testing.T) {
	tests := []struct {
		path string
		want string
		ok   bool
	}{
		{"0/" + base64.RawURLEncoding.EncodeToString([]byte("hi")), "hi", true},
		{"0a/b/c/" + base64.RawURLEncoding.EncodeToString([]byte("hi?")), "hi?", true}, // padding may hold '/'
		{"0xyz/", "", true}, // empty payload
		{"1abc/aGk", "", false},
		{"", "", false},
		{"0abc", "", false},
		{"0abc/aGk=", "", false}, // '=' padding rejected
		{"0abc/a+/=", "", false}, // standard alphabet rejected
		{"0abc/a", "", false},    // impossible length
		{"0abc/aGl", "", false},  // non-canonical trailing bits
	}
	for _, tt := range tests {
		got, err := DecodePath(tt.path)
		if (err == nil) != tt.ok || string(got) != tt.want {
			t.Errorf("DecodePath(%q) = %q, %v", tt.path, got, err)
		}
	}
	if _, err := DecodePath("x/abc"); !errors.Is(err, ErrPathVersion) {
		t.Errorf("wrong version error = %v", err)
	}
}

func TestArmorLayout(t *testing.T) {
	// 23 bytes of payload -> 32 base64 chars + '0' = 33 chars: one full line
	// and a one-character line.
	var buf bytes.Buffer
	payload := []byte("abcdefghijklmnopqrstuvw")
	if err := Armor(&buf, payload); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	if !strings.HasPrefix(s, "<!doctype html>\n<html amp>") || !strings.HasSuffix(s, "</body>\n</html>\n") {
		t.Fatalf("document frame wrong:\n%s", s)
	}
	enc := "0" + base64.StdEncoding.EncodeToString(payload)
	want := "<body>\n<pre>\n" + enc[:32] + "\n" + enc[32:] + "\n</pre>\n</body>"
	if !strings.Contains(s, want) {
		t.Fatalf("body wrong:\n%s\nwant %q", s, want)
	}
}

func TestArmorElementSplit(t *testing.T) {
	// Enough data for three <pre> elements; the text of each stays under
	// the AMP 32 KiB limit.
	payload := make([]byte, 60000)
	rand.Read(payload)
	var buf bytes.Buffer
	if err := Armor(&buf, payload); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	elems := strings.Split(s, "<pre>\n")[1:]
	if len(elems) != 3 {
		t.Fatalf("%d <pre> elements, want 3", len(elems))
	}
	for i, e := range elems {
		body, _, ok := strings.Cut(e, "</pre>")
		if !ok {
			t.Fatalf("element %d not closed", i)
		}
		if len(body) >= elementSizeLimit {
			t.Fatalf("element %d is %d bytes", i, len(body))
		}
		if i < 2 && strings.Count(body, "\n") != maxLinesPerElement {
			t.Fatalf("element %d has %d lines", i, strings.Count(body, "\n"))
		}
	}
	got, err := DecodeArmor(&buf)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("round trip failed: %v", err)
	}
}

func TestArmorRoundTripSizes(t *testing.T) {
	// Sizes around the line and element boundaries, written in odd chunks.
	for _, n := range []int{0, 1, 2, 3, 22, 23, 24, 25, 95, 96, 23807, 23808, 23809, 47615, 47616, 100000} {
		payload := make([]byte, n)
		rand.Read(payload)
		var buf bytes.Buffer
		e := NewArmorEncoder(&buf)
		for rest := payload; len(rest) > 0; {
			k := min(len(rest), 7)
			if _, err := e.Write(rest[:k]); err != nil {
				t.Fatal(err)
			}
			rest = rest[k:]
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		r, err := NewArmorDecoder(&buf)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		var got bytes.Buffer
		got.ReadFrom(r)
		if !bytes.Equal(got.Bytes(), payload) {
			t.Fatalf("n=%d: round trip mismatch", n)
		}
	}
}

func TestDecodeArmor(t *testing.T) {
	tests := []struct {
		name, doc, want string
		ok              bool
	}{
		{"whitespace anywhere", "<html><body><pre>0a\tGV\r\nsb G8=</pre></body></html>", "hello", true},
		{"several pre, text outside ignored", "junk <pre>0aGVs</pre> junk <pre>bG8=</pre> Zm9v", "hello", true},
		{"nested pre counted once", "<pre>0aGV<pre>sbG8=</pre></pre>", "hello", true},
		{"entities decoded", "<pre>0aGVsbG8&#x3d;</pre>", "hello", true},
		{"no pre", "<html>0aGVsbG8=</html>", "", false},
		{"wrong version", "<pre>1aGVsbG8=</pre>", "", false},
		{"bad base64", "<pre>0a!b</pre>", "", false},
		{"missing padding", "<pre>0aGVsbG8</pre>", "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeArmor(strings.NewReader(tt.doc))
			if (err == nil) != tt.ok || string(got) != tt.want {
				t.Fatalf("DecodeArmor = %q, %v", got, err)
			}
		})
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n <= 0 {
		return 0, errors.New("disk full")
	}
	w.n--
	return len(p), nil
}

func TestArmorWriteError(t *testing.T) {
	e := NewArmorEncoder(&failWriter{})
	_, err1 := e.Write([]byte("x"))
	err2 := e.Close()
	if err1 == nil && err2 == nil {
		t.Fatal("write error not reported")
	}
}

// TestDecodeArmorTruncated: a document cut off inside a <pre> element is an
// error, even where the cut leaves whole base64 quanta that would decode to
// a shorter payload. Such a body (a connection dropped mid-response, say)
// was returned as a silently shortened payload.
func TestDecodeArmorTruncated(t *testing.T) {
	payload := make([]byte, 300)
	rand.Read(payload)
	var buf bytes.Buffer
	if err := Armor(&buf, payload); err != nil {
		t.Fatal(err)
	}
	doc := buf.String()
	start := strings.Index(doc, "<pre>\n") + len("<pre>\n")
	// Cut after the version byte and 48 base64 characters (12 quanta),
	// and right before the closing tag.
	cut, seen := start, 0
	for seen < 1+48 {
		if !isASCIISpace(doc[cut]) {
			seen++
		}
		cut++
	}
	for _, truncated := range []string{doc[:cut], doc[:strings.LastIndex(doc, "</pre>")]} {
		got, err := DecodeArmor(strings.NewReader(truncated))
		if err == nil {
			t.Errorf("DecodeArmor of a document cut at byte %d of %d = %d bytes, no error", len(truncated), len(doc), len(got))
		}
	}
}
