package settings

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	proxy "github.com/snowflake-go/snowflake/proxy/lib"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    *Settings
		wantErr bool
	}{
		{name: "empty", in: "", want: &Settings{}},
		{name: "blank", in: " \n", want: &Settings{}},
		{name: "empty object", in: "{}", want: &Settings{}},
		{name: "all fields", in: `{"broker":"https://b.example/","relay":"wss://r.example/","stun":["stun:s.example:3478"],
			"natProbe":"off","relayPattern":"example$","allowNonTLSRelay":true,"allowPrivateRelay":true,
			"capacity":3,"pollIntervalSeconds":2.5,"concurrentPolls":2,"reportURL":"http://127.0.0.1:1/r"}`,
			want: &Settings{Broker: "https://b.example/", Relay: "wss://r.example/", STUN: []string{"stun:s.example:3478"},
				NATProbe: "off", RelayPattern: "example$", AllowNonTLSRelay: true, AllowPrivateRelay: true,
				Capacity: 3, PollIntervalSeconds: 2.5, ConcurrentPolls: 2, ReportURL: "http://127.0.0.1:1/r"}},
		{name: "unknown key", in: `{"brokr":"x"}`, wantErr: true},
		{name: "wrong type", in: `{"capacity":"3"}`, wantErr: true},
		{name: "negative capacity", in: `{"capacity":-1}`, wantErr: true},
		{name: "negative polls", in: `{"concurrentPolls":-1}`, wantErr: true},
		{name: "too many polls", in: `{"concurrentPolls":5}`, wantErr: true},
		{name: "negative interval", in: `{"pollIntervalSeconds":-1}`, wantErr: true},
		{name: "huge interval", in: `{"pollIntervalSeconds":1e9}`, wantErr: true},
		{name: "trailing data", in: `{} {}`, wantErr: true},
		{name: "not an object", in: `[1]`, wantErr: true},
		{name: "truncated", in: `{"broker":`, wantErr: true},
		{name: "too large", in: `{"broker":"` + string(make([]byte, MaxSize)) + `"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse error = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		c, err := (&Settings{}).Config("badge", nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Type != "badge" || c.ConcurrentPolls != DefaultConcurrentPolls || c.NATProbeURL != proxy.DefaultNATProbeURL || len(c.STUNURLs) != 2 ||
			c.STUNURLs[0] != "stun:stun.l.google.com:19302" {
			t.Errorf("defaults: %+v", c)
		}
	})
	t.Run("loopback test network", func(t *testing.T) {
		s := &Settings{Broker: "http://127.0.0.1:8080/broker/", Relay: "ws://127.0.0.1:9/", STUN: []string{"stun:127.0.0.1:3478"},
			NATProbe: "off", RelayPattern: "127.0.0.1$", AllowNonTLSRelay: true, AllowPrivateRelay: true,
			Capacity: 2, PollIntervalSeconds: 2}
		c, err := s.Config("webext", nil)
		if err != nil {
			t.Fatal(err)
		}
		want := proxy.RelayPolicy{Pattern: "127.0.0.1$", AllowNonTLS: true, AllowPrivate: true}
		if c.NATProbeURL != "" || c.Relay != want || c.PollInterval != 2*time.Second || c.Capacity != 2 ||
			c.BrokerURL != s.Broker || c.RelayURL != s.Relay || c.Type != "webext" {
			t.Errorf("config: %+v", c)
		}
	})
	bad := []struct {
		name, typ string
		s         Settings
	}{
		{"standalone type", "standalone", Settings{}},
		{"empty type", "", Settings{}},
		{"broker scheme", "badge", Settings{Broker: "ftp://b.example/"}},
		{"pattern without $", "badge", Settings{RelayPattern: "example.com"}},
		{"poll interval below minimum", "badge", Settings{PollIntervalSeconds: 1}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.s.Config(tt.typ, nil); err == nil {
				t.Error("no error")
			}
		})
	}
	if _, err := (&Settings{}).Config("standalone", nil); !errors.Is(err, ErrType) {
		t.Errorf("standalone: error %v, want ErrType", err)
	}
}

// FuzzParse checks that Parse never panics, and that whatever it accepts
// survives a JSON round trip unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"broker":"https://b.example/","stun":["stun:s:1"],"capacity":2,"pollIntervalSeconds":2.5}`))
	f.Add([]byte(`{"natProbe":"off","relayPattern":"127.0.0.1$","allowNonTLSRelay":true}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"capacity":-1}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		s2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip changed %+v to %+v", s, s2)
		}
		// Config must not panic either.
		s.Config("badge", nil)
	})
}
