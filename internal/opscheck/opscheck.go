// Package opscheck checks that what operators read and deploy — man pages,
// guides, the Dockerfile, docker-compose.yml, systemd units, the Prometheus
// and Grafana examples — agrees with the code: the flags the binaries really
// accept, the metrics they really export and the protocol constants they
// really use. The checks live in this package's tests; this file holds the
// small parsers they share, so that the parsers can be tested on their own.
package opscheck

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Flag is one command-line flag as the binary's -help describes it.
type Flag struct {
	Name string
	// Bool flags take no separate value argument ("-flag", "-flag=false").
	Bool bool
	// Usage is the help text, joined into one line.
	Usage string
}

// helpFlagLine matches the first line of a flag in the output of Go's
// flag.PrintDefaults: two spaces, the dashed name, then for non-boolean
// flags a space and a type word ("string", "duration", "value", ...). Only
// one-letter flags without a type have their usage on the same line, after
// a tab; everything else continues on lines starting with a tab.
var helpFlagLine = regexp.MustCompile(`^  -([A-Za-z0-9][-A-Za-z0-9_.]*)(?: (\S+))?(?:\t(.*))?$`)

// ParseHelp reads the flags from a Go program's -help output. It fails
// when no flag is found, so that a binary that stops printing its usage is
// noticed rather than passing every check vacuously.
func ParseHelp(out string) (map[string]Flag, error) {
	flags := make(map[string]Flag)
	cur := ""
	for line := range strings.SplitSeq(out, "\n") {
		if m := helpFlagLine.FindStringSubmatch(line); m != nil {
			flags[m[1]] = Flag{Name: m[1], Bool: m[2] == "", Usage: strings.TrimSpace(m[3])}
			cur = m[1]
			continue
		}
		if cur != "" && strings.HasPrefix(strings.TrimLeft(line, " "), "\t") {
			f := flags[cur]
			f.Usage = strings.TrimSpace(f.Usage + " " + strings.TrimSpace(line))
			flags[cur] = f
			continue
		}
		cur = ""
	}
	if len(flags) == 0 {
		return nil, errors.New("opscheck: no flags in help output")
	}
	return flags, nil
}

// Names returns the flag names, sorted.
func Names(flags map[string]Flag) []string {
	names := make([]string, 0, len(flags))
	for n := range flags {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SplitCommand splits a command line the way a POSIX shell (and, for the
// subset used in unit files, systemd) would: whitespace separates words,
// single and double quotes group, a backslash escapes the next character
// and a backslash-newline joins lines.
func SplitCommand(s string) ([]string, error) {
	var words []string
	var b strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
			if r == '\n' {
				continue
			}
			b.WriteRune(r)
			inWord = true
		case r == '\\' && quote != '\'':
			escaped = true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				b.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote = r
			inWord = true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("opscheck: unterminated %c quote in %q", quote, s)
	}
	if escaped {
		return nil, fmt.Errorf("opscheck: trailing backslash in %q", s)
	}
	if inWord {
		words = append(words, b.String())
	}
	return words, nil
}

// CheckArgs reports every argument of args that looks like a flag but is
// not one of flags. A non-boolean flag written without "=" consumes the
// next argument as its value. Arguments after "--", and lone "-", are
// operands. Values are not checked (they are often placeholders).
func CheckArgs(flags map[string]Flag, args []string) []error {
	var errs []error
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		name, _, hasValue := strings.Cut(name, "=")
		f, ok := flags[name]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown flag %q", a))
			continue
		}
		if !f.Bool && !hasValue {
			if i+1 >= len(args) {
				errs = append(errs, fmt.Errorf("flag %q needs a value", a))
				continue
			}
			i++
		}
	}
	return errs
}

// manFlag matches a flag at the start of a man-page option tag, once roff
// escapes are removed: `.B -name`, `.BI -name " value"` or `-name value`.
var manFlag = regexp.MustCompile(`^(?:\.(?:B|BI|BR)\s+"?)?-{1,2}([A-Za-z0-9][-A-Za-z0-9_.]*)`)

// roffPlain removes the roff escapes that may appear in an option tag: font
// changes and the escaped hyphen-minus.
var roffPlain = strings.NewReplacer(`\-`, "-", `\fB`, "", `\fI`, "", `\fR`, "", `\fP`, "", `\&`, "")

// ManOptions returns the flags documented in the OPTIONS section of a man
// page written in the man(7) macros: the tag line after each .TP.
func ManOptions(roff string) ([]string, error) {
	entries, err := ManEntries(roff)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Flag
	}
	return names, nil
}

// ManEntry is one option of a man page: the flag its tag names and the
// text of the tag and paragraph, with roff requests and escapes removed.
type ManEntry struct {
	Flag, Text string
}

// ManEntries returns the entries of the OPTIONS section of a man page, in
// order.
func ManEntries(roff string) ([]ManEntry, error) {
	var entries []ManEntry
	inOptions, wantTag := false, false
	for line := range strings.SplitSeq(roff, "\n") {
		switch {
		case strings.HasPrefix(line, ".SH "):
			sec := strings.Trim(strings.TrimSpace(strings.TrimPrefix(line, ".SH ")), `"`)
			inOptions = sec == "OPTIONS"
			wantTag = false
		case !inOptions:
		case strings.HasPrefix(line, ".TP"):
			wantTag = true
		case wantTag:
			wantTag = false
			m := manFlag.FindStringSubmatch(roffPlain.Replace(line))
			if m == nil {
				return nil, fmt.Errorf("opscheck: OPTIONS tag %q names no flag", line)
			}
			entries = append(entries, ManEntry{Flag: m[1], Text: manText(line)})
		case len(entries) > 0:
			e := &entries[len(entries)-1]
			e.Text = strings.TrimSpace(e.Text + " " + manText(line))
		}
	}
	if len(entries) == 0 {
		return nil, errors.New("opscheck: man page has no OPTIONS entries")
	}
	return entries, nil
}

// manText returns the words of a roff line: a leading font macro (.B, .BI,
// .BR, ...) is dropped along with its quotes, other requests are dropped
// whole, and escapes are removed.
func manText(line string) string {
	if strings.HasPrefix(line, ".") {
		macro, rest, _ := strings.Cut(line, " ")
		switch macro {
		case ".B", ".I", ".BI", ".IB", ".BR", ".RB", ".IR", ".RI":
			line = strings.ReplaceAll(rest, `"`, "")
		default:
			return ""
		}
	}
	return strings.TrimSpace(roffPlain.Replace(line))
}

// ExpandEnv replaces ${NAME} and $NAME with vars[NAME]; unknown names are an
// error, because an unexpanded placeholder would hide a flag's value.
// "$$" is a literal "$" (systemd and docker-compose both use that escape).
func ExpandEnv(s string, vars map[string]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i++
		case next == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("opscheck: unterminated ${ in %q", s)
			}
			name := s[i+2 : i+end]
			v, ok := vars[name]
			if !ok {
				return "", fmt.Errorf("opscheck: undefined variable %q", name)
			}
			b.WriteString(v)
			i += end
		case next == '_' || next >= 'A' && next <= 'Z' || next >= 'a' && next <= 'z':
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			v, ok := vars[s[i+1:j]]
			if !ok {
				return "", fmt.Errorf("opscheck: undefined variable %q", s[i+1:j])
			}
			b.WriteString(v)
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// Row is one row of a Markdown table: its cells, trimmed.
type Row []string

// MarkdownTables returns the body rows of every pipe table in md, keyed by
// the nearest preceding heading (without the leading #s).
func MarkdownTables(md string) map[string][]Row {
	tables := make(map[string][]Row)
	heading := ""
	inTable := false
	for line := range strings.SplitSeq(md, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "#") {
			heading = strings.TrimSpace(strings.TrimLeft(t, "#"))
			inTable = false
			continue
		}
		if !strings.HasPrefix(t, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(t, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if !inTable {
			inTable = true // header row
			continue
		}
		if isSeparator(cells) {
			continue
		}
		tables[heading] = append(tables[heading], cells)
	}
	return tables
}

func isSeparator(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, ":-") != "" {
			return false
		}
	}
	return true
}

// CodeSpan returns the text inside the first `backquoted` span of s.
func CodeSpan(s string) (string, bool) {
	_, rest, ok := strings.Cut(s, "`")
	if !ok {
		return "", false
	}
	span, _, ok := strings.Cut(rest, "`")
	return span, ok
}
