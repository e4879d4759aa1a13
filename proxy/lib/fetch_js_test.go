//go:build js

package proxy

import (
	"context"
	"strings"
	"syscall/js"
	"testing"
)

// withFetch replaces the global fetch with one that resolves to respond's
// Response for the test's duration.
func withFetch(t *testing.T, respond func() js.Value) {
	t.Helper()
	orig := js.Global().Get("fetch")
	f := js.FuncOf(func(js.Value, []js.Value) any {
		return js.Global().Get("Promise").Call("resolve", respond())
	})
	js.Global().Set("fetch", f)
	t.Cleanup(func() {
		js.Global().Set("fetch", orig)
		f.Release()
	})
}

func newResponse(body any, status int) js.Value {
	return js.Global().Get("Response").New(body, map[string]any{"status": status})
}

func TestFetchPost(t *testing.T) {
	tests := []struct {
		name    string
		body    any // the Response's body: a string, or nil for none
		status  int
		want    string
		wantErr string
	}{
		{"body", "hello", 200, "hello", ""},
		// A 200 without a body (a service worker may answer so) once made
		// getReader panic the whole proxy.
		{"null body", nil, 200, "", ""},
		{"status", "no", 503, "", "HTTP status 503"},
		{"too large", strings.Repeat("x", 100001), 200, "", "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withFetch(t, func() js.Value {
				if tt.body == nil {
					return newResponse(js.Null(), tt.status)
				}
				return newResponse(tt.body, tt.status)
			})
			got, err := fetchPost(context.Background(), "https://broker.invalid/proxy", []byte("{}"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
