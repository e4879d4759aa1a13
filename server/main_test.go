package main

import (
	"testing"
)

func TestSmethodArgsTLS(t *testing.T) {
	args := smethodArgs(options{acmeHostnames: "a.example,b.example"})
	if v, _ := args.Get("tls"); v != "yes" {
		t.Errorf("tls = %q, want yes", v)
	}
	if h := args["hostname"]; len(h) != 2 || h[0] != "a.example" || h[1] != "b.example" {
		t.Errorf("hostname = %q", h)
	}
	if v, _ := smethodArgs(options{disableTLS: true}).Get("tls"); v != "no" {
		t.Errorf("with -disable-tls, tls = %q, want no", v)
	}
}
