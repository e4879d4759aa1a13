package amp

import (
	"net/url"
	"testing"
)

// TestCacheURLEscapedPath: a publisher path that needs escaping appears in
// the cache URL escaped once, so the cache asks the publisher for the same
// path; it was escaped twice ("%20" became "%2520").
func TestCacheURLEscapedPath(t *testing.T) {
	pub, _ := url.Parse("https://broker.example/a%20b/amp/client/0x/y")
	cache, _ := url.Parse("https://cdn.ampproject.org/")
	u, err := CacheURL(pub, cache, "c")
	if err != nil {
		t.Fatal(err)
	}
	want := "https://broker-example.cdn.ampproject.org/c/s/broker.example/a%20b/amp/client/0x/y"
	if got := u.String(); got != want {
		t.Fatalf("CacheURL = %s, want %s", got, want)
	}
}
