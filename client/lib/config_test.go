package client

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/pion/webrtc/v5"

	"github.com/snowflake-go/snowflake/common/rendezvous"
)

// args turns "k=v;k=v" into a lookup like a SOCKS argument list.
func args(s string) func(string) (string, bool) {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(n string) (string, bool) { v, ok := m[n]; return v, ok }
}

var goodCreds = rendezvous.SQSCredentials{AccessKeyID: "AKID", SecretKey: "secret"}.Encode()

func TestConfigApply(t *testing.T) {
	tests := []struct {
		name    string
		flags   string // applied first, as the command line
		socks   string // then the bridge line
		want    func(c *Config) bool
		wantErr string // substring of the Apply or Validate error
	}{
		{name: "url only", socks: "url=https://broker.example/",
			want: func(c *Config) bool { return c.BrokerURL == "https://broker.example/" }},
		{name: "socks overrides flag", flags: "url=https://flag.example/", socks: "url=https://socks.example/",
			want: func(c *Config) bool { return c.BrokerURL == "https://socks.example/" }},
		{name: "fronts list", socks: "url=https://b/;fronts=a.example,b.example",
			want: func(c *Config) bool { return strings.Join(c.FrontDomains, "|") == "a.example|b.example" }},
		{name: "fronts wins over front", socks: "url=https://b/;front=old.example;fronts=new.example",
			want: func(c *Config) bool { return strings.Join(c.FrontDomains, "|") == "new.example" }},
		{name: "empty fronts wins too", socks: "url=https://b/;front=old.example;fronts=",
			want: func(c *Config) bool { return len(c.FrontDomains) == 0 }},
		{name: "socks front over flag fronts", flags: "fronts=f1,f2", socks: "url=https://b/;front=s1",
			want: func(c *Config) bool { return strings.Join(c.FrontDomains, "|") == "s1" }},
		{name: "legacy front split on commas", socks: "url=https://b/;front=a,b",
			want: func(c *Config) bool { return len(c.FrontDomains) == 2 }},
		{name: "ice keeps stun only", socks: "url=https://b/;ice=stun:a.example:3478,turn:t.example,stun:b.example,bogus",
			want: func(c *Config) bool {
				return strings.Join(c.ICEServers, "|") == "stun:a.example:3478|stun:b.example" && len(c.skippedICE) == 2
			}},
		{name: "max", socks: "url=https://b/;max=3", want: func(c *Config) bool { return c.Max == 3 }},
		{name: "max not a number", socks: "url=https://b/;max=abc", wantErr: "max: not an integer"},
		{name: "max zero", socks: "url=https://b/;max=0", wantErr: "at least 1"},
		{name: "max negative", socks: "url=https://b/;max=-2", wantErr: "at least 1"},
		{name: "max at the limit", socks: "url=https://b/;max=100", want: func(c *Config) bool { return c.Max == 100 }},
		{name: "max huge", socks: "url=https://b/;max=1000000000", wantErr: "at most 100"},
		{name: "utls", socks: "url=https://b/;utls-imitate=hellorandomizedalpn;utls-nosni=YES",
			want: func(c *Config) bool { return c.UTLSImitate == "hellorandomizedalpn" && c.UTLSNoSNI }},
		{name: "utls unknown", socks: "url=https://b/;utls-imitate=hellonetscape", wantErr: "unknown utls-imitate"},
		{name: "nosni without utls", socks: "url=https://b/;utls-nosni=true", wantErr: "needs utls-imitate"},
		{name: "nosni bad bool", socks: "url=https://b/;utls-nosni=perhaps", wantErr: "not a boolean"},
		{name: "fingerprint", socks: "url=https://b/;fingerprint=8838024498816a039fcbbab14e6f40a0843051fa",
			want: func(c *Config) bool { return c.BridgeFingerprint != "" }},
		{name: "bad fingerprint", socks: "url=https://b/;fingerprint=xyz", wantErr: "fingerprint"},
		{name: "amp", socks: "url=https://b/;ampcache=https://cdn.ampproject.org/",
			want: func(c *Config) bool { k, _ := c.RendezvousKind(); return k == RendezvousAMP }},
		{name: "amp without url", socks: "ampcache=https://cdn.ampproject.org/", wantErr: "ampcache needs url"},
		{name: "sqs", socks: "sqsqueue=https://sqs.us-east-1.amazonaws.com/1/q;sqscreds=" + goodCreds,
			want: func(c *Config) bool { k, _ := c.RendezvousKind(); return k == RendezvousSQS }},
		{name: "sqs with url", socks: "url=https://b/;sqsqueue=https://sqs.us-east-1.amazonaws.com/1/q;sqscreds=" + goodCreds,
			wantErr: "sqsqueue cannot be combined"},
		{name: "sqs with flag url", flags: "url=https://b/", socks: "sqsqueue=https://q/;sqscreds=" + goodCreds,
			wantErr: "sqsqueue cannot be combined"},
		{name: "sqs with ampcache", socks: "ampcache=https://c/;sqsqueue=https://q/;sqscreds=" + goodCreds,
			wantErr: "sqsqueue cannot be combined"},
		{name: "sqs without creds", socks: "sqsqueue=https://q/", wantErr: "needs sqscreds"},
		{name: "sqs bad creds", socks: "sqsqueue=https://q/;sqscreds=@@", wantErr: "sqscreds"},
		{name: "nothing", socks: "", wantErr: "no rendezvous method"},
		{name: "keep-local-addresses not in bridge line", socks: "url=https://b/;keep-local-addresses=true",
			wantErr: "cannot be set in the bridge line"},
		{name: "keep-local-addresses flag", flags: "keep-local-addresses=true", socks: "url=https://b/",
			want: func(c *Config) bool { return c.KeepLocalAddresses }},
		{name: "covert dtls disable", socks: "url=https://b/;covertdtls-config=disable",
			want: func(c *Config) bool { return c.CovertDTLSConfig == "disable" }},
		{name: "covert dtls mimic", socks: "url=https://b/;covertdtls-config=mimic",
			want: func(c *Config) bool { return c.CovertDTLSConfig == "mimic" }},
		{name: "covert dtls randomizemimic flag", flags: "covertdtls-config=RandomizeMimic", socks: "url=https://b/",
			want: func(c *Config) bool { return c.CovertDTLSConfig == "RandomizeMimic" }},
		{name: "covert dtls garbage", socks: "url=https://b/;covertdtls-config=zz", wantErr: "unknown covertdtls-config"},
		{name: "covert dtls fingerprint not hex", socks: "url=https://b/;covertdtls-fingerprint=zz", wantErr: "fingerprint"},
		{name: "covert dtls fingerprint no hello", socks: "url=https://b/;covertdtls-fingerprint=16fefd00", wantErr: "fingerprint"},
		{name: "unknown keys ignored", socks: "url=https://b/;foo=bar",
			want: func(c *Config) bool { return c.BrokerURL == "https://b/" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := c.Apply(args(tc.flags), false)
			if err == nil {
				err = c.Apply(args(tc.socks), true)
			}
			if err == nil {
				err = c.Validate()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tc.want(&c) {
				t.Fatalf("config not as expected: %+v", c)
			}
		})
	}
}

func TestConfigSet(t *testing.T) {
	var c Config
	if err := c.Set("keepLocalAddresses", "true"); err != nil || !c.KeepLocalAddresses {
		t.Fatalf("alias: %v %v", err, c.KeepLocalAddresses)
	}
	if err := c.Set("no-such-option", "1"); err == nil {
		t.Fatal("unknown option accepted")
	}
	if err := c.Set("max", "x"); err == nil {
		t.Fatal("bad max accepted")
	}
	if err := c.Set("utls-nosni", ""); err != nil || c.UTLSNoSNI {
		t.Fatalf("empty bool: %v %v", err, c.UTLSNoSNI)
	}
}

func TestConfigErrorsAreSentinels(t *testing.T) {
	c := Config{SQSQueueURL: "https://q/", BrokerURL: "https://b/", SQSCredentials: goodCreds}
	if err := c.Validate(); !errors.Is(err, ErrConflictingRendezvous) {
		t.Fatalf("%v", err)
	}
	if err := (&Config{}).Validate(); !errors.Is(err, ErrNoRendezvous) {
		t.Fatalf("%v", err)
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{BrokerURL: "https://b/", BridgeFingerprint: "8838024498816a039fcbbab14e6f40a0843051fa"}.withDefaults()
	if c.Max != DefaultMax || c.BridgeFingerprint != "8838024498816A039FCBBAB14E6F40A0843051FA" {
		t.Fatalf("%+v", c)
	}
	c = Config{BrokerURL: "https://b/"}.withDefaults()
	if c.BridgeFingerprint != "2B280B23E1107BB62ABFC40DDCC8824814F80A72" {
		t.Fatalf("default fingerprint %q", c.BridgeFingerprint)
	}
}

func FuzzConfigApply(f *testing.F) {
	f.Add("url=https://b/;fronts=a,b;max=2;ice=stun:x:1,turn:y")
	f.Add("sqsqueue=https://q/;sqscreds=" + goodCreds)
	f.Add("url=;ampcache=;utls-imitate=HelloChrome_Auto;utls-nosni=yes")
	f.Add("max=99999999999999999999;fingerprint=zz")
	f.Add("covertdtls-config=mimic;keep-local-addresses=1")
	f.Fuzz(func(t *testing.T, s string) {
		var c Config
		if err := c.Apply(args(s), true); err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			return
		}
		// A configuration that validates must select exactly one method
		// and keep its invariants.
		if _, err := c.RendezvousKind(); err != nil {
			t.Fatalf("valid config without rendezvous: %v", err)
		}
		if c.Max < 0 {
			t.Fatalf("negative max %d", c.Max)
		}
		for _, s := range c.ICEServers {
			if !strings.HasPrefix(s, "stun:") {
				t.Fatalf("non-STUN ICE server %q kept", s)
			}
		}
	})
}

func TestSelectICEServers(t *testing.T) {
	all := []string{"stun:a", "stun:b", "stun:c", "stun:d", "stun:e"}
	tests := []struct {
		in   []string
		want int
	}{{nil, 0}, {all[:1], 1}, {all[:2], 2}, {all[:3], 2}, {all[:4], 2}, {all, 3}}
	for _, tc := range tests {
		got := selectICEServers(tc.in)
		if len(got) != tc.want {
			t.Errorf("%d servers: kept %d, want %d", len(tc.in), len(got), tc.want)
		}
		seen := map[string]bool{}
		for _, s := range got {
			if seen[s] {
				t.Errorf("duplicate %s", s)
			}
			seen[s] = true
		}
	}
}

// TestMaxBounded: max sizes the ready queue and the number of peers kept,
// so an absurd value (from a bridge line, or set by a library user) is
// refused with an error instead of being allocated.
func TestMaxBounded(t *testing.T) {
	c := Config{BrokerURL: "https://b/", Max: 1 << 40}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("Validate with max 2^40: %v, want an error", err)
	}
	if _, err := New(c, nil); err == nil {
		t.Fatal("New accepted max 2^40")
	}
}

// TestICEKeepsOnlyWhatPionAccepts: every ice entry the configuration keeps
// goes into each PeerConnection's ICE servers, and pion refuses a whole
// PeerConnection for one URL it cannot parse. An entry that passes our
// STUN parser but not pion's would fail every rendezvous that picks it;
// it must be skipped (and reported) like any other unusable entry.
func TestICEKeepsOnlyWhatPionAccepts(t *testing.T) {
	var c Config
	ice := "stun:2001:db8::1,stun:a.example:3478/path,stun:[2001:db8::2]:3478,stun:b.example,stun:c.example:19302?transport=udp"
	if err := c.Set("ice", ice); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.ICEServers {
		pc, err := webrtc.NewPeerConnection(webrtc.Configuration{ICEServers: []webrtc.ICEServer{{URLs: []string{s}}}})
		if err != nil {
			t.Errorf("kept %q, which pion refuses: %v", s, err)
			continue
		}
		pc.Close()
	}
	if got, want := strings.Join(c.ICEServers, ","), "stun:[2001:db8::2]:3478,stun:b.example,stun:c.example:19302?transport=udp"; got != want {
		t.Errorf("kept %s, want %s", got, want)
	}
	if got, want := strings.Join(c.skippedICE, ","), "stun:2001:db8::1,stun:a.example:3478/path"; got != want {
		t.Errorf("skipped %s, want %s", got, want)
	}
}

// An ice= list whose every entry is unusable leaves the client without
// STUN: behind most NATs no proxy can reach it then, and the user must be
// told that, not only which entries were dropped.
func TestICEAllUnusableWarns(t *testing.T) {
	for _, tc := range []struct {
		ice  string
		warn bool
	}{
		{"turn:a.example:3478,stun:b.example:3478/path", true},
		{"turn:a.example:3478,stun:b.example:3478", false},
	} {
		var c Config
		if err := c.Set("url", "http://127.0.0.1:1/"); err != nil {
			t.Fatal(err)
		}
		if err := c.Set("ice", tc.ice); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		tr, err := New(c, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		tr.Close()
		if got := strings.Contains(logs.String(), "no usable STUN server"); got != tc.warn {
			t.Errorf("ice=%s: warned of no STUN server: %v, want %v\n%s", tc.ice, got, tc.warn, logs.String())
		}
	}
}
