package opscheck

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// role is one of this repository's binaries: its installed name (used in
// man pages, units and images) and its main package.
type role struct{ name, pkg string }

var roles = []role{
	{"snowflake-server", "./server"},
	{"snowflake-broker", "./broker"},
	{"snowflake-proxy", "./proxy"},
	{"snowflake-client", "./client"},
	{"probetest", "./probetest"},
}

func roleByName(name string) (role, bool) {
	for _, r := range roles {
		if r.name == name {
			return r, true
		}
	}
	return role{}, false
}

// present reports whether the role's main package is in the tree. Roles
// are written by other engineers and may land later than their docs.
func (r role) present(t testing.TB) bool {
	_, err := os.Stat(filepath.Join(testenv.ModuleRoot(t), r.pkg, "main.go"))
	return err == nil
}

var (
	flagsMu    sync.Mutex
	flagsCache = map[string]map[string]Flag{}
)

// flagsOf builds the role's binary and returns the flags its -help lists.
// ok is false (and the caller should skip) when the package does not exist
// yet.
func flagsOf(t testing.TB, name string) (flags map[string]Flag, ok bool) {
	t.Helper()
	r, known := roleByName(name)
	if !known {
		t.Fatalf("%s is not a binary of this repository", name)
	}
	if !r.present(t) {
		return nil, false
	}
	flagsMu.Lock()
	defer flagsMu.Unlock()
	if f, ok := flagsCache[name]; ok {
		return f, true
	}
	bin := testenv.Binary(t, r.pkg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-help")
	// -help must not need any environment; a managed PT would otherwise
	// complain about missing TOR_PT_* variables before parsing flags.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// flag.ExitOnError exits 0 for -help; some programs use 2. Either is
	// fine as long as the usage was printed.
	_ = cmd.Run()
	f, err := ParseHelp(out.String())
	if err != nil {
		t.Fatalf("%s -help: %v\n%s", name, err, out.String())
	}
	flagsCache[name] = f
	return f, true
}

// repoFile reads a file relative to the module root.
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkCommand fails the test for every unknown flag in a command line of
// one of our binaries found in file where.
func checkCommand(t *testing.T, where, name string, args []string) {
	t.Helper()
	flags, ok := flagsOf(t, name)
	if !ok {
		t.Logf("%s: %s is not in the tree yet; its flags are not checked", where, name)
		return
	}
	for _, err := range CheckArgs(flags, args) {
		t.Errorf("%s: %s: %v", where, name, err)
	}
	if name == "snowflake-server" && !serverTLSChosen(args) {
		t.Errorf("%s: snowflake-server %q has neither -acme-hostnames nor -disable-tls, so it refuses to start", where, args)
	}
}

// serverTLSChosen reports whether a snowflake-server command line says how
// to serve TLS, which the server requires before it listens; a line that
// only asks for -version or -help needs not.
func serverTLSChosen(args []string) bool {
	for _, a := range args {
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case !strings.HasPrefix(a, "-"):
		case name == "version" || name == "help" || name == "h":
			return true
		case name == "acme-hostnames":
			return true
		case name == "disable-tls" && (!hasValue || value == "true" || value == "1"):
			return true
		}
	}
	return false
}

// binaryName returns the role name of a program path such as
// /usr/local/bin/snowflake-proxy or ./snowflake-proxy, or "".
func binaryName(path string) string {
	base := filepath.Base(path)
	if _, ok := roleByName(base); ok {
		return base
	}
	return ""
}

// run runs a tool and returns its combined output; the test fails when it
// exits non-zero.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
