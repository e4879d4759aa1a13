package opscheck

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	broker "github.com/snowflake-go/snowflake/broker/lib"
	client "github.com/snowflake-go/snowflake/client/lib"
	"github.com/snowflake-go/snowflake/common/encapsulation"
	"github.com/snowflake-go/snowflake/common/messages"
	"github.com/snowflake-go/snowflake/common/turbotunnel"
	"github.com/snowflake-go/snowflake/internal/testenv"
	proxy "github.com/snowflake-go/snowflake/proxy/lib"
	server "github.com/snowflake-go/snowflake/server/lib"
)

// codeConstants are the values doc/protocol.md tabulates, by the name its
// "Code" column uses. Adding a row to the doc needs an entry here, and an
// entry here needs a row in the doc.
var codeConstants = map[string]any{
	"messages.ClientVersion":               messages.ClientVersion,
	"messages.ProxyVersion":                messages.ProxyVersion,
	"messages.MaxBodySize":                 messages.MaxBodySize,
	"messages.MaxSidLength":                messages.MaxSidLength,
	"messages.DefaultBridgeFingerprint":    messages.DefaultBridgeFingerprint,
	"messages.StatusClientMatch":           messages.StatusClientMatch,
	"messages.StatusNoMatch":               messages.StatusNoMatch,
	"messages.StatusIncorrectRelayPattern": messages.StatusIncorrectRelayPattern,
	"messages.StatusSuccess":               messages.StatusSuccess,
	"messages.StatusClientGone":            messages.StatusClientGone,
	"messages.ErrStrNoProxies":             messages.ErrStrNoProxies,
	"messages.ErrStrTimedOut":              messages.ErrStrTimedOut,
	"messages.ErrStrUnsupportedVersion":    messages.ErrStrUnsupportedVersion,
	"messages.ErrStrNoOffer":               messages.ErrStrNoOffer,
	"messages.ErrStrInvalidNAT":            messages.ErrStrInvalidNAT,
	"messages.ErrStrBadFingerprint":        messages.ErrStrBadFingerprint,
	"messages.ErrStrUnknownBridge":         messages.ErrStrUnknownBridge,
	"messages.ErrStrBadURLPath":            messages.ErrStrBadURLPath,
	"messages.ProxyTypeStandalone":         messages.ProxyTypeStandalone,

	"broker.DefaultClientTimeout":      broker.DefaultClientTimeout,
	"broker.DefaultClientWait":         broker.DefaultClientWait,
	"broker.DefaultProxyPollTimeout":   broker.DefaultProxyPollTimeout,
	"broker.DefaultNextPoll":           broker.DefaultNextPoll,
	"broker.RejectedNextPoll":          broker.RejectedNextPoll,
	"broker.DefaultMetricsInterval":    broker.DefaultMetricsInterval,
	"broker.DefaultBridgeURL":          broker.DefaultBridgeURL,
	"broker.ClientQueuePrefix":         broker.ClientQueuePrefix,
	"broker.DefaultSQSCleanupInterval": broker.DefaultSQSCleanupInterval,
	"broker.DefaultSQSQueueMaxAge":     broker.DefaultSQSQueueMaxAge,
	"broker.SQSRequestMaxAge":          broker.SQSRequestMaxAge,

	"proxy.DefaultBrokerURL":      proxy.DefaultBrokerURL,
	"proxy.DefaultRelayURL":       proxy.DefaultRelayURL,
	"proxy.DefaultSTUNURL":        proxy.DefaultSTUNURL,
	"proxy.DefaultNATProbeURL":    proxy.DefaultNATProbeURL,
	"proxy.DefaultRelayPattern":   proxy.DefaultRelayPattern,
	"proxy.DefaultPollInterval":   proxy.DefaultPollInterval,
	"proxy.MinPollInterval":       proxy.MinPollInterval,
	"proxy.DefaultConcurrentPoll": proxy.DefaultConcurrentPoll,
	"proxy.DefaultIdleTimeout":    proxy.DefaultIdleTimeout,

	"client.DefaultMax":         client.DefaultMax,
	"client.CollectInterval":    client.CollectInterval,
	"client.FirstRetry":         client.FirstRetry,
	"client.DataChannelTimeout": client.DataChannelTimeout,
	"client.StaleTimeout":       client.StaleTimeout,

	"turbotunnel.Token":             turbotunnel.Token,
	"turbotunnel.PreambleLength":    turbotunnel.PreambleLength,
	"turbotunnel.MTU":               turbotunnel.MTU,
	"turbotunnel.WindowSize":        turbotunnel.WindowSize,
	"turbotunnel.MaxPacketSize":     turbotunnel.MaxPacketSize,
	"turbotunnel.QueueSize":         turbotunnel.QueueSize,
	"turbotunnel.OutgoingQueueSize": turbotunnel.OutgoingQueueSize,
	"turbotunnel.ClientMapTimeout":  turbotunnel.ClientMapTimeout,
	"turbotunnel.AckHold":           turbotunnel.AckHold,

	"turbotunnel.ClientSmuxConfig().Version":           turbotunnel.ClientSmuxConfig().Version,
	"turbotunnel.ClientSmuxConfig().KeepAliveInterval": turbotunnel.ClientSmuxConfig().KeepAliveInterval,
	"turbotunnel.ClientSmuxConfig().KeepAliveTimeout":  turbotunnel.ClientSmuxConfig().KeepAliveTimeout,
	"turbotunnel.ServerSmuxConfig().KeepAliveTimeout":  turbotunnel.ServerSmuxConfig().KeepAliveTimeout,
	"turbotunnel.ClientSmuxConfig().MaxFrameSize":      turbotunnel.ClientSmuxConfig().MaxFrameSize,
	"turbotunnel.ClientSmuxConfig().MaxReceiveBuffer":  turbotunnel.ClientSmuxConfig().MaxReceiveBuffer,
	"turbotunnel.ClientSmuxConfig().MaxStreamBuffer":   turbotunnel.ClientSmuxConfig().MaxStreamBuffer,

	"encapsulation.MaxPrefixLength":  encapsulation.MaxPrefixLength,
	"encapsulation.MaxLength":        encapsulation.MaxLength,
	"encapsulation.DefaultBatchSize": encapsulation.DefaultBatchSize,

	"server.DefaultMaxConns":          server.DefaultMaxConns,
	"server.DefaultPreambleTimeout":   server.DefaultPreambleTimeout,
	"server.DefaultClientMapCapacity": server.DefaultClientMapCapacity,
	"server.DefaultORDialTimeout":     server.DefaultORDialTimeout,
	"server.DefaultIdleTimeout":       server.DefaultIdleTimeout,
	"server.DefaultWriteTimeout":      server.DefaultWriteTimeout,
}

// formatConstant prints a code value the way the doc writes it.
func formatConstant(v any) string {
	switch v := v.(type) {
	case time.Duration:
		return v.String()
	case [8]byte:
		return strings.TrimSpace(fmt.Sprintf("% x", v[:]))
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

var codeRef = regexp.MustCompile(`^[a-z]+\.[A-Z][A-Za-z0-9]*(\(\)\.[A-Za-z0-9]+)?$`)

func TestProtocolConstants(t *testing.T) {
	doc := repoFile(t, "doc/protocol.md")
	seen := map[string]bool{}
	for heading, rows := range MarkdownTables(doc) {
		for _, row := range rows {
			if len(row) < 3 {
				continue
			}
			ref, ok := CodeSpan(row[len(row)-1])
			if !ok || !codeRef.MatchString(ref) {
				continue
			}
			want, ok := codeConstants[ref]
			if !ok {
				t.Errorf("%s: row %q names %s, which this test does not know; add it to codeConstants", heading, row[0], ref)
				continue
			}
			seen[ref] = true
			got, ok := CodeSpan(row[len(row)-2])
			if !ok {
				t.Errorf("%s: row %q: value is not in `backquotes`", heading, row[0])
				continue
			}
			if code := formatConstant(want); got != code {
				t.Errorf("%s: %s: doc says %q, code has %q", heading, ref, got, code)
			}
		}
	}
	for ref := range codeConstants {
		if !seen[ref] {
			t.Errorf("doc/protocol.md does not tabulate %s", ref)
		}
	}
}

func TestEncapsulationPrefixes(t *testing.T) {
	rows := MarkdownTables(repoFile(t, "doc/protocol.md"))["Encapsulation"]
	n := 0
	for _, row := range rows {
		if len(row) != 2 {
			continue
		}
		length, err := strconv.Atoi(row[0])
		if err != nil {
			continue
		}
		span, _ := CodeSpan(row[1])
		want, err := hex.DecodeString(strings.ReplaceAll(span, " ", ""))
		if err != nil {
			t.Errorf("length %d: bad prefix %q: %v", length, span, err)
			continue
		}
		var buf bytes.Buffer
		if _, err := encapsulation.WriteData(&buf, make([]byte, length)); err != nil {
			t.Errorf("WriteData(%d bytes): %v", length, err)
			continue
		}
		if got := buf.Bytes()[:len(want)]; !bytes.Equal(got, want) || buf.Len() != len(want)+length {
			t.Errorf("length %d: encoded prefix % x (total %d), doc says % x", length, got, buf.Len(), want)
		}
		n++
	}
	if n < 5 {
		t.Errorf("doc/protocol.md lists %d encapsulation examples; want the table back", n)
	}
}

// helpDefault finds the default that flag.PrintDefaults appends to a
// usage: (default "text") for strings, (default value) otherwise.
var helpDefault = regexp.MustCompile(`\(default (?:"([^"]*)"|([^)]*))\)`)

// defaultSpellings returns the ways a man page may write a default:
// durations as Go prints them (1h0m0s) or without zero units (1h).
func defaultSpellings(def string) []string {
	out := []string{def}
	if d, err := time.ParseDuration(def); err == nil && d > 0 {
		short := d.String()
		if strings.HasSuffix(short, "m0s") { // 1h0m0s -> 1h0m, 2m0s -> 2m
			short = strings.TrimSuffix(short, "0s")
		}
		if strings.HasSuffix(short, "h0m") { // 1h0m -> 1h
			short = strings.TrimSuffix(short, "0m")
		}
		out = append(out, short)
	}
	return out
}

var requiredManSections = []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SEE ALSO"}

// TestManPages checks each man page against its binary's real flags, both
// ways, and runs it through groff with all warnings on.
func TestManPages(t *testing.T) {
	groff := testenv.LookPath(t, "groff")
	root := testenv.ModuleRoot(t)
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			page := filepath.Join(root, "doc/man", r.name+".1")
			text, err := os.ReadFile(page)
			if err != nil {
				t.Fatalf("no man page: %v", err)
			}
			if !bytes.HasPrefix(text, []byte(".TH "+strings.ToUpper(strings.ReplaceAll(r.name, "-", `\-`))+" 1 ")) {
				t.Errorf("page does not start with .TH %s 1", strings.ToUpper(r.name))
			}
			for _, sec := range requiredManSections {
				if !regexp.MustCompile(`(?m)^\.SH "?` + sec + `"?$`).Match(text) {
					t.Errorf("no %s section", sec)
				}
			}
			out := run(t, root, nil, groff, "-man", "-ww", "-z", page)
			if strings.TrimSpace(out) != "" {
				t.Errorf("groff warnings:\n%s", out)
			}
			entries, err := ManEntries(string(text))
			if err != nil {
				t.Fatal(err)
			}
			var documented []string
			for _, e := range entries {
				documented = append(documented, e.Flag)
			}
			flags, ok := flagsOf(t, r.name)
			if !ok {
				t.Skipf("%s is not in the tree yet; its page is not compared", r.pkg)
			}
			// A default the binary prints must be the one the page states.
			for _, e := range entries {
				f, ok := flags[e.Flag]
				if !ok {
					continue
				}
				m := helpDefault.FindStringSubmatch(f.Usage)
				if m == nil {
					continue
				}
				def := m[1] + m[2]
				if def == "" || slices.ContainsFunc(defaultSpellings(def), func(d string) bool { return strings.Contains(e.Text, d) }) {
					continue
				}
				t.Errorf("-%s defaults to %q, but %s says: %s", e.Flag, def, filepath.Base(page), e.Text)
			}
			for _, name := range Names(flags) {
				if !slices.Contains(documented, name) {
					t.Errorf("flag -%s (%s) is missing from %s", name, flags[name].Usage, filepath.Base(page))
				}
			}
			for _, name := range documented {
				if _, ok := flags[name]; !ok {
					t.Errorf("%s documents -%s, which %s does not have", filepath.Base(page), name, r.name)
				}
			}
		})
	}
}

// TestDocCommands checks every command line for one of our binaries that
// the guides show in code blocks, so that examples keep working when flags
// change.
func TestDocCommands(t *testing.T) {
	root := testenv.ModuleRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "doc/*.md"))
	if len(files) < 5 {
		t.Fatalf("only %d guides in doc/", len(files))
	}
	checked := 0
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range codeBlockCommands(string(text)) {
			words, err := SplitCommand(c.line)
			if err != nil {
				t.Errorf("%s:%d: %v", filepath.Base(f), c.lineNo, err)
				continue
			}
			for i, w := range words {
				if bin := binaryName(w); bin != "" && (i == 0 || isCommandPrefix(words[:i])) {
					checkCommand(t, fmt.Sprintf("%s:%d", filepath.Base(f), c.lineNo), bin, words[i+1:])
					checked++
					break
				}
			}
		}
	}
	if checked < 5 {
		t.Errorf("only %d example command lines found in doc/*.md", checked)
	}
}

// isCommandPrefix reports whether words before a binary name are things
// that run it (sudo, env assignments, exec, ServerTransportPlugin ...).
func isCommandPrefix(words []string) bool {
	for _, w := range words {
		switch {
		case w == "sudo" || w == "exec" || w == "env" || w == "snowflake" || w == "ServerTransportPlugin" || w == "ClientTransportPlugin":
		case strings.Contains(w, "=") && !strings.HasPrefix(w, "-"):
		default:
			return false
		}
	}
	return true
}

type docCommand struct {
	line   string
	lineNo int
}

// codeBlockCommands returns the lines of fenced code blocks, with
// backslash continuations joined, that mention one of our binaries.
func codeBlockCommands(md string) []docCommand {
	var cmds []docCommand
	in := false
	var pending strings.Builder
	start := 0
	for i, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			pending.Reset()
			continue
		}
		if !in {
			continue
		}
		if pending.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(line, "\\") {
			pending.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		pending.WriteString(line)
		full := strings.TrimSpace(pending.String())
		pending.Reset()
		full = strings.TrimPrefix(full, "$ ")
		full = strings.TrimPrefix(full, "# ")
		for _, r := range roles {
			if strings.Contains(full, r.name) {
				cmds = append(cmds, docCommand{full, start})
				break
			}
		}
	}
	return cmds
}

var mdLink = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)

// TestDocLinks checks that relative links in the guides and the README
// point at files that exist.
func TestDocLinks(t *testing.T) {
	root := testenv.ModuleRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "doc/*.md"))
	files = append(files, filepath.Join(root, "README.md"))
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(text), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", filepath.Base(f), target)
			}
		}
	}
}

// TestConfigExamples parses the example broker configuration with the
// broker's own parsers: the bridge list file and every bridge-list or
// poll-interval line the guides show.
func TestConfigExamples(t *testing.T) {
	if _, err := broker.ParseBridgeList(strings.NewReader(repoFile(t, "doc/examples/bridge-list.json"))); err != nil {
		t.Errorf("doc/examples/bridge-list.json: %v", err)
	}
	found := 0
	for _, name := range []string{"broker.md", "docker.md", "bridge.md"} {
		for i, line := range strings.Split(repoFile(t, "doc/"+name), "\n") {
			line = strings.Trim(strings.TrimSpace(line), "`()")
			switch {
			case strings.HasPrefix(line, `{"displayName"`):
				found++
				if _, err := broker.ParseBridgeList(strings.NewReader(line)); err != nil {
					t.Errorf("doc/%s:%d: bridge list line: %v", name, i+1, err)
				}
			case strings.HasPrefix(line, `{"unrestricted_poll_interval"`):
				found++
				u, r, err := broker.ParsePollIntervals(strings.NewReader(line))
				if err != nil || u <= 0 || r <= 0 {
					t.Errorf("doc/%s:%d: poll intervals %v, %v: %v", name, i+1, u, r, err)
				}
			}
		}
	}
	if found < 2 {
		t.Errorf("found %d configuration examples in the guides, want the bridge list and poll interval examples", found)
	}
}

func TestDefaultSpellings(t *testing.T) {
	for in, want := range map[string][]string{
		"1h0m0s":  {"1h0m0s", "1h"},
		"24h0m0s": {"24h0m0s", "24h"},
		"2m0s":    {"2m0s", "2m"},
		"1m30s":   {"1m30s", "1m30s"},
		"5s":      {"5s", "5s"},
		"50000":   {"50000"},
		":443":    {":443"},
	} {
		if got := defaultSpellings(in); !slices.Equal(got, want) {
			t.Errorf("defaultSpellings(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestArchitecturePackages keeps doc/architecture.md's package table and
// the module's packages in step, both ways.
func TestArchitecturePackages(t *testing.T) {
	root := testenv.ModuleRoot(t)
	out := run(t, root, nil, "go", "list", "-e", "-f", "{{.ImportPath}}", "./...")
	const module = "github.com/snowflake-go/snowflake/"
	inTree := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), module); ok {
			inTree[p] = true
		}
	}
	documented := map[string]bool{}
	for _, rows := range MarkdownTables(repoFile(t, "doc/architecture.md")) {
		for _, row := range rows {
			if p, ok := CodeSpan(row[0]); ok {
				documented[p] = true
			}
		}
	}
	if len(documented) < 10 {
		t.Fatalf("doc/architecture.md lists only %d packages", len(documented))
	}
	for p := range inTree {
		if !documented[p] {
			t.Errorf("package %s is missing from doc/architecture.md", p)
		}
	}
	for p := range documented {
		if !inTree[p] {
			t.Errorf("doc/architecture.md lists %s, which is not a package of this module", p)
		}
	}
}
