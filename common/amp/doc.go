// Package amp implements the AMP-cache rendezvous encoding (wire-protocol
// §2.4): building the cache URL of a broker URL, encoding a client poll into
// a GET path, and the "armor" that wraps a response in an AMP-valid HTML page
// (and unwraps it again).
//
// The path format after the broker's "amp/client/" prefix is
//
//	"0" <cache-breaker, any bytes, may contain '/'> "/" <base64url, no '='>
//
// The armored body is an HTML document whose <pre> elements hold, with all
// ASCII whitespace removed, "0" followed by the standard (padded) base64 of
// the payload. The encoder writes lines of 32 characters and at most 992
// lines per <pre> element, keeping each element under 32 KiB as the AMP
// validator requires.
package amp
