package broker

import (
	"errors"
	"strings"
	"testing"

	"github.com/snowflake-go/snowflake/common/messages"
)

const loopbackBridge = `{"displayName":"loopback","webSocketAddress":"ws://127.0.0.1:8080/","fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}`

func TestParseBridgeList(t *testing.T) {
	list, err := ParseBridgeList(strings.NewReader(loopbackBridge + "\n\n" +
		`{"displayName":"second","webSocketAddress":"wss://snowflake.torproject.net/","fingerprint":"8838024498816a039fcbbab14e6f40a0843051fa"}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("%d bridges", len(list))
	}
	b, ok := list.Lookup("2b280b23e1107bb62abfc40ddcc8824814f80a72")
	if !ok || b.WebSocketAddress != "ws://127.0.0.1:8080/" {
		t.Fatalf("lookup by lower-case: %+v %v", b, ok)
	}
	if _, ok := list.Lookup("8838024498816A039FCBBAB14E6F40A0843051FA"); !ok {
		t.Fatal("lookup by upper-case failed")
	}
	if _, ok := list.Lookup("nothex"); ok {
		t.Fatal("lookup of garbage succeeded")
	}

	bad := map[string]string{
		"unknown key":     `{"displayName":"x","webSocketAddress":"wss://a/","fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72","extra":1}`,
		"bad fingerprint": `{"displayName":"x","webSocketAddress":"wss://a/","fingerprint":"2B28"}`,
		"no fingerprint":  `{"displayName":"x","webSocketAddress":"wss://a/"}`,
		"https url":       `{"displayName":"x","webSocketAddress":"https://a/","fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}`,
		"no host":         `{"displayName":"x","webSocketAddress":"wss:///","fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}`,
		"not json":        `displayName=x`,
		"two objects":     loopbackBridge + " {}",
		"duplicate":       loopbackBridge + "\n" + loopbackBridge,
		"array":           `[]`,
		"wrong type":      `{"displayName":1}`,
	}
	for name, in := range bad {
		if _, err := ParseBridgeList(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseBridgeList(strings.NewReader("\n\n")); !errors.Is(err, ErrEmptyBridgeList) {
		t.Errorf("empty list: %v", err)
	}
	if _, err := ParseBridgeList(strings.NewReader(strings.Repeat("x", maxBridgeLine+1))); err == nil {
		t.Error("over-long line accepted")
	}
}

func TestBridgeListUsed(t *testing.T) {
	list, err := ParseBridgeList(strings.NewReader(loopbackBridge))
	if err != nil {
		t.Fatal(err)
	}
	_, srv := newTestBroker(t, func(c *Config) { c.Bridges = list })
	// The default bridge is replaced by the file, so it keeps working only
	// because the file lists its fingerprint; another is unknown.
	r := post(t, srv.URL+"/client", "1.0\n"+`{"offer":"x","fingerprint":"8838024498816A039FCBBAB14E6F40A0843051FA"}`)
	if r.body != `{"error":"`+messages.ErrStrUnknownBridge+`"}` {
		t.Fatalf("got %s", r.body)
	}
}

func FuzzParseBridgeList(f *testing.F) {
	f.Add([]byte(loopbackBridge))
	f.Add([]byte(loopbackBridge + "\n" + `{"displayName":"","webSocketAddress":"ws://[::1]:1/","fingerprint":"` + strings.Repeat("ab", 32) + `"}`))
	f.Add([]byte(`{"displayName":"x","webSocketAddress":"wss://a/","fingerprint":"2B28","x":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		list, err := ParseBridgeList(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for fp, br := range list {
			got, ok := list.Lookup(br.Fingerprint)
			if !ok || got != br {
				t.Fatalf("entry %s not found by its own fingerprint", fp)
			}
		}
	})
}
