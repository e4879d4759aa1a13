package h2client

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestTransportCloseDuringDial: Close while a connection is being dialled
// must not make the dialling request panic (nil map).
func TestTransportCloseDuringDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
		}
	}()
	dialing := make(chan struct{})
	proceed := make(chan struct{})
	tr := &Transport{DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		close(dialing)
		<-proceed
		var d net.Dialer
		return d.DialContext(ctx, network, ln.Addr().String())
	}}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		req := newRequest(t, "GET", "https://b.test/", "").WithContext(ctx)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-dialing
	tr.Close()
	close(proceed)
	if r := <-done; r != nil {
		t.Fatalf("RoundTrip panicked: %v", r)
	}
}
