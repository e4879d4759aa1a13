package broker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/nat"
)

// TestKeepAliveAfterParking checks that a proxy's connection survives its
// parked poll: every request of a proxy (expired poll, matched poll, answer,
// and a GET) goes over one TCP connection.
func TestKeepAliveAfterParking(t *testing.T) {
	b, srv := newTestBroker(t, func(c *Config) { c.ClientTimeout = 5 * time.Second })
	var dials atomic.Int32
	tr := &http.Transport{
		MaxConnsPerHost: 1,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	proxy := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	send := func(method, path, body string) string {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := proxy.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("%s %s: %d close=%v %s", method, path, resp.StatusCode, resp.Close, out)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s %s: no CORS header", method, path)
		}
		return string(out)
	}
	pollBody := proxyPollBody(t, "ka", nat.Unrestricted, 0, "snowflake.torproject.net$")

	// 1. A poll that expires.
	if out := send(http.MethodPost, "/proxy", pollBody); !strings.Contains(out, `"Status":"no match"`) {
		t.Fatalf("first poll: %s", out)
	}
	// 2. A poll that is matched.
	client := make(chan httpResult, 1)
	go func() {
		waitWaiting(t, b, 1)
		client <- post(t, srv.URL+"/client", clientPollBody(t, nat.Unknown))
	}()
	out := send(http.MethodPost, "/proxy", pollBody)
	pr, err := messages.DecodeProxyPollResponse([]byte(out))
	if err != nil || pr.Status != messages.StatusClientMatch || pr.Offer != testOffer {
		t.Fatalf("second poll: %s (%v)", out, err)
	}
	// 3. The answer, on the kept-alive connection.
	ans, _ := (&messages.AnswerRequest{Sid: "ka", Answer: testAnswer}).Encode()
	if out := send(http.MethodPost, "/answer", string(ans)); out != `{"Status":"success"}` {
		t.Fatalf("answer: %s", out)
	}
	if r := <-client; !strings.Contains(r.body, `"answer"`) {
		t.Fatalf("client: %s", r.body)
	}
	// 4. Anything else works on it too, including errors.
	if out := send(http.MethodGet, "/debug", ""); !strings.HasPrefix(out, "current snowflakes available: 0") {
		t.Fatalf("debug: %s", out)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/proxy", strings.NewReader(`{"Version":"1.3"}`))
	resp, err := proxy.Do(req)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("bad poll: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections dialled, want 1", n)
	}
	// Close ends the kept-alive connection.
	b.Close()
	if _, err := proxy.Post(srv.URL+"/debug", "", nil); err == nil && dials.Load() == 1 {
		t.Fatal("connection still served after Close")
	}
}

// TestKeepAliveBadRequest checks that garbage on a kept-alive connection
// gets a 400 and a closed connection.
func TestKeepAliveBadRequest(t *testing.T) {
	_, srv := newTestBroker(t, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	body := proxyPollBody(t, "raw", nat.Unrestricted, 0, "snowflake.torproject.net$")
	io.WriteString(conn, "POST /proxy HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "no match") || strings.Contains(string(buf[:n]), "Connection: close") {
		t.Fatalf("first response: %q %v", buf[:n], err)
	}
	io.WriteString(conn, "NONSENSE\r\n\r\n")
	all, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(all), "HTTP/1.1 400 ") {
		t.Fatalf("garbage got %q", all)
	}
}

// TestKeepAliveLimits checks that a kept-alive connection is held to the
// same header size limit as a fresh one: an endless header line ends the
// connection as soon as the limit is passed (with a 400, unless the reset
// caused by the unread excess destroys it first), not after the header
// timeout with an ever-growing buffer.
func TestKeepAliveLimits(t *testing.T) {
	conn := keptAliveConn(t, 20*time.Second)
	defer conn.Close()
	// Now on the keep-alive loop: 256 KiB of one unterminated header line.
	start := time.Now()
	io.WriteString(conn, "POST /proxy HTTP/1.1\r\nX-Long: "+strings.Repeat("a", 256<<10))
	all, _ := io.ReadAll(conn)
	if len(all) > 0 && !strings.HasPrefix(string(all), "HTTP/1.1 400 ") {
		t.Fatalf("oversized header got %q", all)
	}
	if d := time.Since(start); d >= readHeaderTimeout {
		t.Fatalf("connection ended after %v: by the header timeout, not the size limit", d)
	}
}

// TestKeepAliveHandOffStaysTracked checks that a connection parked from
// the keep-alive loop and answered at once stays known to Close. A client
// can take the parked poll, and the connection's new keep-alive loop
// register it, before the loop that parked it has returned; that loop
// must not then unregister it, or Close neither closes the connection nor
// returns until the proxy's idle timeout ends the new loop.
func TestKeepAliveHandOffStaysTracked(t *testing.T) {
	b, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	proxy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	tracked := func() bool {
		b.resumed.mu.Lock()
		defer b.resumed.mu.Unlock()
		_, ok := b.resumed.conns[conn]
		return ok
	}
	// The handler parks the request and, as a client taking the poll at
	// once would, answers it before returning.
	b.mux = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		b.resume(c, []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), true)
		deadline := time.Now().Add(5 * time.Second)
		for !tracked() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	})
	// This loop is left unregistered, so that tracked reports the
	// registration by the loop that takes over.
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		b.serveConn(conn)
	}()
	proxy.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(proxy, "POST /proxy HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	buf := make([]byte, 256)
	if n, err := proxy.Read(buf); err != nil || !strings.HasSuffix(string(buf[:n]), "ok") {
		t.Fatalf("response: %q %v", buf[:n], err)
	}
	<-loopDone
	if !tracked() {
		t.Error("the parking loop unregistered the connection its successor serves")
	}
	closed := make(chan struct{})
	go func() {
		b.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close waits for the idle kept-alive connection instead of closing it")
	}
	if _, err := proxy.Read(buf); err != io.EOF {
		t.Fatalf("connection not closed by Close: %v", err)
	}
}

// TestKeepAliveOversizeBody checks that a kept-alive connection is held
// to a body limit: a request whose body goes on past what the handler
// reads and the drain allows is answered at once and the connection
// closed, instead of the loop reading the rest of the body (here 1 TiB
// declared, sent as fast as the peer can) until the read timeout.
func TestKeepAliveOversizeBody(t *testing.T) {
	conn := keptAliveConn(t, 30*time.Second)
	defer conn.Close()
	// Now on the keep-alive loop.
	start := time.Now()
	io.WriteString(conn, "POST /answer HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(1<<40)+"\r\n\r\n")
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if d := time.Since(start); d >= readTimeout/3 {
		t.Fatalf("answered after %v: the loop read the body until the read timeout (%q %v)", d, buf[:n], err)
	}
	// The reset caused by the unread excess may destroy the 400 first.
	if n == 0 && errors.Is(err, syscall.ECONNRESET) {
		return
	}
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 400 ") {
		t.Fatalf("oversized body got %q %v", buf[:n], err)
	}
	if !strings.Contains(string(buf[:n]), "Connection: close") {
		t.Fatalf("connection kept alive with the body's rest unread: %q", buf[:n])
	}
}

// TestExpectContinue checks that a request sent with Expect: 100-continue
// gets the interim 100 response once its handler reads the body, on a
// fresh connection (served by net/http) as on a kept-alive one (served by
// serveConn): such a client sends the body only after the 100, or after
// giving up waiting (curl waits 1 s). A request refused without its body
// being read (declared too long) gets no 100 and a closed connection, as
// the client may never send that body.
func TestExpectContinue(t *testing.T) {
	for _, tt := range []struct {
		name string
		dial func(*testing.T, time.Duration) net.Conn
		// closes: the connection ends right after the refusal. net/http
		// instead waits (until its read timeout) to discard a body it
		// never asked for; the client, told to close, does not wait.
		closes bool
	}{
		{"fresh", dialTestBroker, false},
		{"kept alive", keptAliveConn, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn := tt.dial(t, 10*time.Second)
			defer conn.Close()
			br := bufio.NewReader(conn)
			body, _ := (&messages.AnswerRequest{Sid: "nobody", Answer: testAnswer}).Encode()
			io.WriteString(conn, "POST /answer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: "+
				strconv.Itoa(len(body))+"\r\n\r\n")
			// Much less than the read timeout, more than a loaded
			// machine needs.
			conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusContinue {
				t.Fatalf("before the body: %v %v; want 100 Continue", resp, err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			conn.Write(body)
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(out) != `{"Status":"client gone"}` || resp.Close {
				t.Fatalf("answer: %d %s close=%v", resp.StatusCode, out, resp.Close)
			}

			io.WriteString(conn, "POST /answer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: "+
				strconv.Itoa(messages.MaxBodySize+1)+"\r\n\r\n")
			resp, err = http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusBadRequest || !resp.Close {
				t.Fatalf("oversized body: %v %v; want 400 and Connection: close without a 100", resp, err)
			}
			io.Copy(io.Discard, resp.Body)
			if !tt.closes {
				return
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
				t.Fatalf("after the refusal: %q %v; want the connection closed", rest, err)
			}
		})
	}
}

// dialTestBroker dials a new test broker. The connection's deadline is d
// from now.
func dialTestBroker(t *testing.T, d time.Duration) net.Conn {
	t.Helper()
	_, srv := newTestBroker(t, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(d))
	return conn
}

// keptAliveConn dials a new test broker and makes one proxy poll on the
// connection, which is then on the broker's keep-alive loop. The
// connection's deadline is d from now.
func keptAliveConn(t *testing.T, d time.Duration) net.Conn {
	t.Helper()
	conn := dialTestBroker(t, d)
	body := proxyPollBody(t, "raw", nat.Unrestricted, 0, "snowflake.torproject.net$")
	io.WriteString(conn, "POST /proxy HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "no match") {
		conn.Close()
		t.Fatalf("first response: %q %v", buf[:n], err)
	}
	return conn
}
