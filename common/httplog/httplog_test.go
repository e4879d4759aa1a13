package httplog

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// failingListener fails its first Accepts with a temporary error, as a
// listener does when the process has run out of file descriptors, and then
// blocks until closed.
type failingListener struct {
	net.Listener
	mu       sync.Mutex
	failures int
}

type tempError struct{}

func (tempError) Error() string   { return "accept4: too many open files" }
func (tempError) Timeout() bool   { return false }
func (tempError) Temporary() bool { return true }

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.failures > 0 {
		l.failures--
		l.mu.Unlock()
		return nil, tempError{}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// syncBuffer is a bytes.Buffer safe for the server's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAcceptErrorIsWarning runs a real http.Server whose listener fails and
// checks that an Info-level log shows the accept error as a warning.
func TestAcceptErrorIsWarning(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	h := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})
	hs := &http.Server{ReadHeaderTimeout: time.Second, ErrorLog: ErrorLog(h)}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(&failingListener{Listener: ln, failures: 2}) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "too many open files") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	hs.Close()
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	got := out.String()
	if !strings.Contains(got, "level=WARN") || !strings.Contains(got, "http: Accept error: accept4: too many open files") {
		t.Fatalf("log at Info level = %q, want the accept error as a warning", got)
	}
}

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		msg, level string
	}{
		{"http: Accept error: accept4: too many open files; retrying in 5ms\n", "WARN"},
		{"http: TLS handshake error from [scrubbed]: EOF\n", "DEBUG"},
		{"http: superfluous response.WriteHeader call\n", "DEBUG"},
		{"", "DEBUG"},
	} {
		var out bytes.Buffer
		l := ErrorLog(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
		l.Print(tc.msg)
		got := out.String()
		if !strings.Contains(got, "level="+tc.level) {
			t.Errorf("%q logged as %q, want level %s", tc.msg, got, tc.level)
		}
		if strings.Count(got, "\n") != 1 {
			t.Errorf("%q logged as %q, want one line", tc.msg, got)
		}
	}
	// Below the handler's level nothing is written.
	var out bytes.Buffer
	ErrorLog(slog.NewTextHandler(&out, nil)).Print("http: TLS handshake error from [scrubbed]: EOF")
	if out.Len() != 0 {
		t.Errorf("debug message at Info level: %q", out.String())
	}
}
