package proxy

import (
	"context"
	"fmt"
	"syscall/js"

	"github.com/snowflake-go/snowflake/common/messages"
)

// poster sends broker and NAT-probe requests with the browser's fetch.
// Going through net/http would also work (its js transport calls fetch
// too), but linking net/http's client roughly doubles the WebAssembly
// binary; Config.HTTPClient is therefore ignored in the browser.
func (c *Config) poster() poster {
	return fetchPost
}

// fetchPost POSTs body to u and returns at most messages.MaxBodySize bytes
// of a 200 response. No Content-Type header is sent, so a cross-origin POST
// stays a CORS "simple request" without a preflight.
func fetchPost(ctx context.Context, u string, body []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	abort := js.Global().Get("AbortController").New()
	arr := jsBytes(body)
	opts := js.Global().Get("Object").New()
	opts.Set("method", "POST")
	opts.Set("body", arr)
	opts.Set("signal", abort.Get("signal"))
	opts.Set("cache", "no-store")
	opts.Set("credentials", "omit")
	opts.Set("referrerPolicy", "no-referrer")
	cancel := func() { abort.Call("abort") }

	resp, err := await(ctx, js.Global().Call("fetch", u, opts), cancel)
	if err != nil {
		return nil, err
	}
	if status := resp.Get("status").Int(); status != 200 {
		// Let the browser drop the body; the connection is its business.
		cancel()
		return nil, fmt.Errorf("HTTP status %d", status)
	}
	// A 200 with a null body (a service worker's synthetic response, say)
	// would make getReader panic the whole proxy: it is an empty answer.
	stream := resp.Get("body")
	if stream.IsNull() || stream.IsUndefined() {
		return nil, nil
	}
	reader := stream.Call("getReader")
	out := make([]byte, 0, 4096)
	for {
		chunk, err := await(ctx, reader.Call("read"), cancel)
		if err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		if chunk.Get("done").Bool() {
			return out, nil
		}
		v := chunk.Get("value")
		n := v.Get("byteLength").Int()
		if len(out)+n > messages.MaxBodySize {
			cancel()
			return nil, fmt.Errorf("response larger than %d bytes", messages.MaxBodySize)
		}
		out = append(out, make([]byte, n)...)
		js.CopyBytesToGo(out[len(out)-n:], v)
	}
}
