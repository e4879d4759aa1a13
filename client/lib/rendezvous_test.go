package client

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/common/amp"
	"github.com/snowflake-go/snowflake/common/messages"
)

// TestBadBrokerResponses: whatever a broker (or a censor impersonating
// one) answers, a rendezvous attempt fails with a clear error and the
// transport stays usable.
func TestBadBrokerResponses(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"garbage", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "\x00\xffnot json") }, "broker response"},
		{"empty object", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") }, "broker"},
		{"no proxies", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"error":"no snowflake proxies currently available"}`)
		}, "no snowflake proxies currently available"},
		{"answer not an envelope", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"answer":"hello"}`) }, "broker answer"},
		{"answer of type offer", func(w http.ResponseWriter, r *http.Request) {
			env, _ := messages.SessionDescription{Type: "offer", SDP: "v=0\r\n"}.Encode()
			b, _ := (&messages.ClientPollResponse{Answer: env}).Encode()
			w.Write(b)
		}, `type "offer"`},
		{"answer with broken SDP", func(w http.ResponseWriter, r *http.Request) {
			env, _ := messages.SessionDescription{Type: "answer", SDP: "this is not SDP"}.Encode()
			b, _ := (&messages.ClientPollResponse{Answer: env}).Encode()
			w.Write(b)
		}, "remote description"},
		{"HTTP 500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", 500) }, "500"},
		{"HTTP 404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, "404"},
		{"huge body", func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 200000)) }, "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var polls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				polls.Add(1)
				body, _ := io.ReadAll(r.Body)
				if _, err := messages.DecodeClientPollRequest(body); err != nil {
					t.Errorf("client sent an invalid poll: %v", err)
				}
				tc.handler(w, r)
			}))
			defer srv.Close()
			tr, err := New(Config{BrokerURL: srv.URL + "/", KeepLocalAddresses: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			for i := 0; i < 2; i++ { // the transport survives a bad answer
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err = tr.newPeer(ctx)
				cancel()
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("attempt %d: error = %v, want one containing %q", i, err, tc.want)
				}
			}
			if polls.Load() != 2 {
				t.Fatalf("broker saw %d polls, want 2", polls.Load())
			}
		})
	}
}

func TestBrokerErrorType(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"error":"timed out waiting for answer!"}`)
	}))
	defer srv.Close()
	tr, _ := New(Config{BrokerURL: srv.URL + "/", KeepLocalAddresses: true}, nil)
	defer tr.Close()
	_, err := tr.newPeer(context.Background())
	var be *BrokerError
	if !errors.As(err, &be) || be.Message != messages.ErrStrTimedOut {
		t.Fatalf("error = %v, want BrokerError %q", err, messages.ErrStrTimedOut)
	}
}

// TestBrokerTimeout: a broker that never answers makes Dial return when
// its context ends, with the reason.
func TestBrokerTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	tr, _ := New(Config{BrokerURL: srv.URL + "/", KeepLocalAddresses: true}, nil)
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := tr.Dial(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial error = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Dial took %v after its deadline", d)
	}
}

// TestAMPWrongArmor: an AMP cache returning an unarmored or mis-armored
// page is a failed attempt, not a crash.
func TestAMPWrongArmor(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"plain json": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"answer":"x"}`) },
		"armored garbage": func(w http.ResponseWriter, r *http.Request) {
			amp.Armor(w, []byte("not json at all"))
		},
		"bad version": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html><body><pre>\n9AAAA\n</pre></body></html>")
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			// The cache host is derived from the broker name; the test
			// dialer sends it to srv whatever the name.
			tr, err := New(Config{BrokerURL: "http://broker.example/", AMPCacheURL: "http://cache.example/",
				KeepLocalAddresses: true, DialBroker: dialTo(srv.Listener.Addr().String())}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if _, err := tr.newPeer(context.Background()); err == nil {
				t.Fatal("rendezvous succeeded")
			}
		})
	}
}

// TestCloseEndsBrokerConnections: a Transport (one per SOCKS connection)
// that is closed leaves no connection to the broker behind, idle in a
// pool until its timeout (90 s for HTTP/1.1, 5 min for HTTP/2).
func TestCloseEndsBrokerConnections(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tls), func(t *testing.T) {
			var open atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"error":"no snowflake proxies currently available"}`)
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				switch s {
				case http.StateNew:
					open.Add(1)
				case http.StateClosed, http.StateHijacked:
					open.Add(-1)
				}
			}
			cfg := Config{KeepLocalAddresses: true}
			if tls {
				srv.EnableHTTP2 = true
				srv.StartTLS()
				cfg.RootCAs = x509.NewCertPool()
				cfg.RootCAs.AddCert(srv.Certificate())
			} else {
				srv.Start()
			}
			defer srv.Close()
			cfg.BrokerURL = srv.URL + "/"
			tr, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			var be *BrokerError
			if _, err := tr.newPeer(context.Background()); !errors.As(err, &be) {
				t.Fatalf("newPeer: %v, want the broker's error", err)
			}
			if open.Load() == 0 {
				t.Fatal("no connection reached the broker")
			}
			tr.Close()
			deadline := time.Now().Add(5 * time.Second)
			for open.Load() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d broker connections still open 5 s after Close", open.Load())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
