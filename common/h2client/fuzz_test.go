package h2client

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// serverBytes builds a server's byte stream for the seed corpus.
func serverBytes(fn func(fr *http2.Framer, block func(kv ...string) []byte)) []byte {
	var out bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	fr.AllowIllegalWrites = true
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	fn(fr, func(kv ...string) []byte {
		hb.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return append([]byte(nil), hb.Bytes()...)
	})
	return out.Bytes()
}

// FuzzConn feeds arbitrary server bytes to a connection carrying one POST
// and requires that the request, the body read and Close all return:
// no panic, no hang, no unbounded buffering.
func FuzzConn(f *testing.F) {
	f.Add(serverBytes(func(fr *http2.Framer, block func(kv ...string) []byte) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
		fr.WriteSettingsAck()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":status", "200", "content-length", "2"), EndHeaders: true})
		fr.WriteData(1, true, []byte("ok"))
	}))
	f.Add(serverBytes(func(fr *http2.Framer, block func(kv ...string) []byte) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
		fr.WritePing(false, [8]byte{1})
		fr.WriteWindowUpdate(1, 100)
		fr.WriteWindowUpdate(0, 1<<31-1)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":status", "103"), EndHeaders: true})
		b := block(":status", "200", "content-encoding", "gzip", "x-long", string(make([]byte, 300)))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:10]})
		fr.WriteContinuation(1, true, b[10:])
		fr.WriteDataPadded(1, false, []byte{0x1f, 0x8b}, make([]byte, 20))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("trailer", "x"), EndHeaders: true, EndStream: true})
	}))
	f.Add(serverBytes(func(fr *http2.Framer, block func(kv ...string) []byte) {
		fr.WriteSettings()
		fr.WriteRSTStream(1, http2.ErrCodeRefusedStream)
		fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte("calm"))
	}))
	f.Add(serverBytes(func(fr *http2.Framer, block func(kv ...string) []byte) {
		fr.WriteData(3, false, []byte("stray"))
		fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: block(":method", "GET"), EndHeaders: true})
		fr.WriteRawFrame(0xfa, 0, 0, []byte("grease"))
	}))
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	f.Fuzz(func(t *testing.T, input []byte) {
		cc, sc := net.Pipe()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			io.Copy(io.Discard, sc)
		}()
		go func() {
			defer wg.Done()
			sc.Write(input)
		}()
		c, err := NewConn(cc, Config{MaxBodyBytes: 4096, WriteTimeout: time.Second, IdleTimeout: time.Second})
		if err != nil {
			sc.Close()
			wg.Wait()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", "https://b.test/client", bytes.NewReader(make([]byte, 100)))
		if resp, err := c.RoundTrip(req); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if len(b) > 1<<20-1 {
				t.Errorf("body of %d bytes over a 4096-byte limit", len(b))
			}
			resp.Body.Close()
		}
		c.Close()
		sc.Close()
		wg.Wait()
	})
}
