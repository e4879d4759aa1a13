package opscheck

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseHelp(t *testing.T) {
	// Shaped like flag.PrintDefaults output, including its quirks.
	help := "Usage of prog:\n" +
		"  -addr string\n" +
		"    \taddress to listen on (default \":443\")\n" +
		"  -disable-tls\n" +
		"    \tserve plain HTTP\n" +
		"    \t(second usage line)\n" +
		"  -v\tverbose\n" +
		"  -n int\n" +
		"    \tcount (default 3)\n" +
		"  -ice value\n" +
		"    \tcomma-separated STUN URLs\n" +
		"trailing text\n"
	got, err := ParseHelp(help)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Flag{
		"addr":        {Name: "addr", Usage: `address to listen on (default ":443")`},
		"disable-tls": {Name: "disable-tls", Bool: true, Usage: "serve plain HTTP (second usage line)"},
		"v":           {Name: "v", Bool: true, Usage: "verbose"},
		"n":           {Name: "n", Usage: "count (default 3)"},
		"ice":         {Name: "ice", Usage: "comma-separated STUN URLs"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if _, err := ParseHelp("no flags here\n"); err == nil {
		t.Error("help without flags: no error")
	}
}

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		err      bool
	}{
		{"plain", "a -b c", []string{"a", "-b", "c"}, false},
		{"spaces", "  a\t b  ", []string{"a", "b"}, false},
		{"double quotes", `a "b c" d`, []string{"a", "b c", "d"}, false},
		{"single quotes", `-p 'x$' y`, []string{"-p", "x$", "y"}, false},
		{"empty quoted", `a "" b`, []string{"a", "", "b"}, false},
		{"backslash", `a\ b`, []string{"a b"}, false},
		{"continuation", "a \\\n  -b", []string{"a", "-b"}, false},
		{"joined quotes", `-x="a b"`, []string{"-x=a b"}, false},
		{"unterminated", `a "b`, nil, true},
		{"trailing backslash", `a \`, nil, true},
		{"empty", "", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SplitCommand(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckArgs(t *testing.T) {
	flags := map[string]Flag{
		"addr":        {Name: "addr"},
		"disable-tls": {Name: "disable-tls", Bool: true},
	}
	for _, tc := range []struct {
		name string
		args []string
		bad  int
	}{
		{"ok", []string{"-addr", ":443", "-disable-tls"}, 0},
		{"equals", []string{"-addr=:443", "--disable-tls=false"}, 0},
		{"value looks like flag", []string{"-addr", "-disable-tls"}, 0},
		{"unknown", []string{"-adr", ":443"}, 1},
		{"missing value", []string{"-disable-tls", "-addr"}, 1},
		{"operands", []string{"file", "-", "--", "-whatever"}, 0},
		{"two unknown", []string{"-x", "-y"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if errs := CheckArgs(flags, tc.args); len(errs) != tc.bad {
				t.Errorf("got %d errors %v, want %d", len(errs), errs, tc.bad)
			}
		})
	}
}

func TestManOptions(t *testing.T) {
	page := `.TH X 1
.SH NAME
x \- y
.SH SYNOPSIS
.TP
.B \-notanoption
.SH OPTIONS
.TP
.BI \-addr " address"
Listen address.
.TP
.B \-disable\-tls
Plain HTTP.
.TP
\fB\-log\fR \fIfile\fR
Log file.
.SH "SEE ALSO"
.TP
.B \-ignored
`
	got, err := ManOptions(page)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"addr", "disable-tls", "log"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	entries, err := ManEntries(page)
	if err != nil {
		t.Fatal(err)
	}
	wantEntries := []ManEntry{
		{"addr", "-addr  address Listen address."},
		{"disable-tls", "-disable-tls Plain HTTP."},
		{"log", "-log file Log file."},
	}
	if !reflect.DeepEqual(entries, wantEntries) {
		t.Errorf("entries %q, want %q", entries, wantEntries)
	}
	if _, err := ManOptions(".SH OPTIONS\n.TP\nplain text\n"); err == nil {
		t.Error("tag without a flag: no error")
	}
	if _, err := ManOptions(".SH NAME\nx\n"); err == nil {
		t.Error("page without OPTIONS: no error")
	}
}

func TestExpandEnv(t *testing.T) {
	vars := map[string]string{"HOST": "example.net", "P": "x$"}
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"-h ${HOST}", "-h example.net", false},
		{"-h $HOST:443", "-h example.net:443", false},
		{"-p ${P}", "-p x$", false},
		{"cost $$5", "cost $5", false},
		{"end$", "end$", false},
		{"${NOPE}", "", true},
		{"$NOPE", "", true},
		{"${HOST", "", true},
	} {
		got, err := ExpandEnv(tc.in, vars)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ExpandEnv(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestMarkdownTables(t *testing.T) {
	md := strings.Join([]string{
		"# Title",
		"## Constants",
		"| Name | Value |",
		"|---|:--:|",
		"| a | `1` |",
		"| b | `two` |",
		"",
		"text | not a table",
		"## Other",
		"| x |",
		"|---|",
		"| y |",
	}, "\n")
	got := MarkdownTables(md)
	want := map[string][]Row{
		"Constants": {{"a", "`1`"}, {"b", "`two`"}},
		"Other":     {{"y"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if s, ok := CodeSpan("x `abc` `d`"); !ok || s != "abc" {
		t.Errorf("CodeSpan = %q, %v", s, ok)
	}
	if _, ok := CodeSpan("no span"); ok {
		t.Error("CodeSpan without backquotes: ok")
	}
}

func TestServerTLSChosen(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"-acme-hostnames", "bridge.example.net"}, true},
		{[]string{"-acme-hostnames=bridge.example.net", "-metrics-addr", "127.0.0.1:9100"}, true},
		{[]string{"-listen", ":8080", "-orport", "127.0.0.1:9001", "-disable-tls"}, true},
		{[]string{"--disable-tls=true"}, true},
		{[]string{"-version"}, true},
		{[]string{"-disable-tls=false"}, false},
		{[]string{"-acme-cert-cache", "/var/lib/tor/pt_state/snowflake-certificate-cache", "-metrics-addr", "127.0.0.1:9100"}, false},
		{[]string{"--", "-disable-tls"}, false},
		{nil, false},
	} {
		if got := serverTLSChosen(tc.args); got != tc.want {
			t.Errorf("serverTLSChosen(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
