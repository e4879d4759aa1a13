package opscheck

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/snowflake-go/snowflake/internal/testenv"
)

// stage is one FROM block of the Dockerfile.
type stage struct {
	name, from string
	entrypoint []string
	cmd        []string
	user       string
	copies     []string // COPY lines, verbatim
}

// parseDockerfile reads the stages of a Dockerfile: instructions joined
// across backslash-newlines, ENTRYPOINT and CMD in exec (JSON) form, and
// entrypoint, command and user inherited from a parent stage.
func parseDockerfile(t *testing.T, text string) map[string]*stage {
	t.Helper()
	text = strings.ReplaceAll(text, "\\\n", " ")
	stages := map[string]*stage{}
	var cur *stage
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			f := strings.Fields(rest)
			cur = &stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				cur.name = f[2]
			}
			if parent, ok := stages[cur.from]; ok {
				cur.entrypoint, cur.cmd, cur.user = parent.entrypoint, parent.cmd, parent.user
			}
			stages[cur.name] = cur
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				t.Errorf("Dockerfile:%d: %s must use the exec (JSON) form: %v", i+1, instr, err)
				continue
			}
			if strings.EqualFold(instr, "ENTRYPOINT") {
				cur.entrypoint, cur.cmd = v, nil // a new ENTRYPOINT resets CMD
			} else {
				cur.cmd = v
			}
		case "USER":
			cur.user = rest
		case "COPY":
			cur.copies = append(cur.copies, rest)
		}
	}
	return stages
}

// finalStages are the Dockerfile targets that docker-compose.yml and the
// docs build; each must exist and run as non-root.
var finalStages = []string{"proxy", "broker", "server", "client", "probetest", "bridge"}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, repoFile(t, "Dockerfile"))
	for _, name := range finalStages {
		t.Run(name, func(t *testing.T) {
			s, ok := stages[name]
			if !ok {
				t.Fatalf("no stage %q", name)
			}
			if s.user == "" || s.user == "root" || s.user == "0" || strings.HasPrefix(s.user, "0:") {
				t.Errorf("stage %s runs as %q, want a non-root USER", name, s.user)
			}
			if len(s.entrypoint) == 0 {
				t.Fatalf("stage %s has no ENTRYPOINT", name)
			}
			if bin := binaryName(s.entrypoint[0]); bin != "" {
				// The binary must be copied to where the entrypoint runs it.
				if !slices.ContainsFunc(s.copies, func(c string) bool { return strings.HasSuffix(c, " "+s.entrypoint[0]) }) {
					t.Errorf("stage %s: nothing is copied to %s", name, s.entrypoint[0])
				}
				checkCommand(t, "Dockerfile stage "+name, bin, append(slices.Clone(s.entrypoint[1:]), s.cmd...))
			}
		})
	}
	// Every binary the build stage names must be a real main package, so
	// the loop does not silently skip a renamed one; and binaries must be
	// static, since the runtime images have no C library to speak of.
	build := repoFile(t, "Dockerfile")
	if !strings.Contains(build, "CGO_ENABLED=0 go build") {
		t.Error("Dockerfile does not build static binaries (CGO_ENABLED=0)")
	}
	for _, r := range roles {
		if !strings.Contains(build, r.name+":"+strings.TrimPrefix(r.pkg, "./")) {
			t.Errorf("Dockerfile build stage does not build %s from %s", r.name, r.pkg)
		}
	}
	// The bridge stage's torrc must exist in the build context.
	if _, err := os.Stat(filepath.Join(testenv.ModuleRoot(t), "doc/examples/torrc-bridge")); err != nil {
		t.Error(err)
	}
}

// composeFile is the part of `docker-compose config` output we check.
type composeFile struct {
	Services map[string]struct {
		Build struct {
			Target string `json:"target"`
		} `json:"build"`
		Command     []string                `json:"command"`
		Entrypoint  []string                `json:"entrypoint"`
		Restart     string                  `json:"restart"`
		NetworkMode string                  `json:"network_mode"`
		Healthcheck struct{ Test []string } `json:"healthcheck"`
		Volumes     []any                   `json:"volumes"`
		Environment map[string]string       `json:"environment"`
	} `json:"services"`
	Volumes map[string]any `json:"volumes"`
}

// composeEnv is what an operator's .env provides; values are never used to
// reach anything (no Docker engine runs in tests). TEST-NET addresses.
var composeEnv = []string{
	"SNOWFLAKE_BROKER_HOST=broker.example.net",
	"SNOWFLAKE_BRIDGE_HOST=bridge.example.net",
	"SNOWFLAKE_RELAY_PATTERN=example.net$",
	"SNOWFLAKE_BROKER_ADDR=192.0.2.1",
	"SNOWFLAKE_BRIDGE_ADDR=192.0.2.2",
}

func TestCompose(t *testing.T) {
	compose := testenv.LookPath(t, "docker-compose")
	root := testenv.ModuleRoot(t)

	// Without the required variables the file must refuse to render, so
	// that nobody deploys placeholders.
	t.Run("required variables", func(t *testing.T) {
		cmd := cleanEnvCommand(compose, "-f", "docker-compose.yml", "config", "-q")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("docker-compose config succeeded without SNOWFLAKE_* variables:\n%s", out)
		}
	})

	run(t, root, composeEnv, compose, "-f", "docker-compose.yml", "config", "-q")
	rendered := run(t, root, composeEnv, compose, "-f", "docker-compose.yml", "config")
	// docker-compose only prints YAML.
	var cf composeFile
	if err := json.Unmarshal(yamlToJSON(t, rendered), &cf); err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, repoFile(t, "Dockerfile"))

	var roleCount = map[string]int{}
	for name, svc := range cf.Services {
		t.Run(name, func(t *testing.T) {
			st, ok := stages[svc.Build.Target]
			if !ok {
				t.Fatalf("build target %q is not a Dockerfile stage", svc.Build.Target)
			}
			roleCount[svc.Build.Target]++
			if svc.Restart == "" || svc.Restart == "no" {
				t.Errorf("no restart policy")
			}
			if len(svc.Healthcheck.Test) == 0 {
				t.Errorf("no healthcheck")
			}
			entry := st.entrypoint
			if len(svc.Entrypoint) > 0 {
				entry = svc.Entrypoint
			}
			args := append(slices.Clone(entry[1:]), svc.Command...)
			switch bin := binaryName(entry[0]); {
			case bin != "":
				checkCommand(t, "docker-compose.yml service "+name, bin, args)
				// A health check on a metrics port must use the port the
				// service is told to listen on.
				if i := slices.Index(args, "-metrics-port"); i >= 0 && i+1 < len(args) {
					if hc := strings.Join(svc.Healthcheck.Test, " "); !strings.Contains(hc, ":"+args[i+1]+"/") {
						t.Errorf("healthcheck %q does not probe -metrics-port %s", hc, args[i+1])
					}
				}
			case filepath.Base(entry[0]) == "tor":
				checkTorArgs(t, "docker-compose.yml service "+name, args)
			default:
				t.Errorf("entrypoint %q runs neither one of our binaries nor tor", entry[0])
			}
		})
	}
	for _, want := range []string{"broker", "bridge", "proxy"} {
		if roleCount[want] == 0 {
			t.Errorf("docker-compose.yml deploys no %s", want)
		}
	}
	if roleCount["proxy"] < 2 {
		t.Errorf("docker-compose.yml deploys %d proxies; the example shows how to run several", roleCount["proxy"])
	}
	if len(cf.Volumes) == 0 {
		t.Error("no named volumes for ACME caches and tor state")
	}
}

// cleanEnvCommand is exec.Command with an environment holding only PATH,
// so that the developer's own SNOWFLAKE_* variables cannot leak in.
func cleanEnvCommand(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Env = []string{"PATH=" + os.Getenv("PATH")}
	return c
}

// checkTorArgs checks the snowflake-server command line inside tor
// options (ServerTransportPlugin snowflake exec PATH ARGS...).
func checkTorArgs(t *testing.T, where string, args []string) {
	t.Helper()
	found := false
	for i := 0; i+1 < len(args); i++ {
		if !strings.EqualFold(strings.TrimLeft(args[i], "-"), "ServerTransportPlugin") {
			continue
		}
		checkPluginLine(t, where, args[i+1])
		found = true
	}
	if !found {
		t.Logf("%s: no ServerTransportPlugin on the command line; the image's torrc provides it", where)
	}
}

// checkPluginLine checks "snowflake exec /path/snowflake-server args...".
func checkPluginLine(t *testing.T, where, value string) {
	t.Helper()
	w, err := SplitCommand(value)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	if len(w) < 3 || w[0] != "snowflake" || w[1] != "exec" || binaryName(w[2]) != "snowflake-server" {
		t.Errorf("%s: ServerTransportPlugin %q does not run snowflake-server", where, value)
		return
	}
	checkCommand(t, where, "snowflake-server", w[3:])
}

var torPluginLine = regexp.MustCompile(`(?m)^\s*ServerTransportPlugin\s+(.*)$`)

// TestTorrcExamples checks each example torrc with tor itself and the
// snowflake-server flags in it.
func TestTorrcExamples(t *testing.T) {
	tor := testenv.LookPath(t, "tor")
	root := testenv.ModuleRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "doc/examples/torrc-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no doc/examples/torrc-* files (%v)", err)
	}
	server := ""
	if r, _ := roleByName("snowflake-server"); r.present(t) {
		server = testenv.Binary(t, r.pkg)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			text, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ms := torPluginLine.FindAllStringSubmatch(string(text), -1)
			if len(ms) == 0 && strings.Contains(string(text), "ServerTransportListenAddr") {
				t.Error("ServerTransportListenAddr without ServerTransportPlugin")
			}
			for _, m := range ms {
				checkPluginLine(t, filepath.Base(f), m[1])
			}
			// tor --verify-config with paths moved into a temporary
			// directory; the DataDirectory must be private to the user.
			dir := t.TempDir()
			args := []string{"--verify-config", "-f", f, "--DataDirectory", filepath.Join(dir, "data"),
				"--Log", "notice stderr", "--Nickname", "opscheck", "--ContactInfo", "none"}
			if server != "" && len(ms) > 0 {
				args = append(args, "--ServerTransportPlugin", "snowflake exec "+server+" -disable-tls")
			}
			if strings.Contains(string(text), "ExtORPortCookieAuthFile ") {
				args = append(args, "--ExtORPortCookieAuthFile", filepath.Join(dir, "cookie"))
			}
			os.Mkdir(filepath.Join(dir, "data"), 0o700)
			out := run(t, dir, nil, tor, args...)
			if !strings.Contains(out, "Configuration was valid") {
				t.Errorf("tor did not accept %s:\n%s", f, out)
			}
		})
	}
}

// unitFile is a parsed systemd unit: values by "Section.Key".
type unitFile map[string][]string

func parseUnit(text string) unitFile {
	u := unitFile{}
	section := ""
	text = strings.ReplaceAll(text, "\\\n", " ")
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	return u
}

func (u unitFile) last(key string) string {
	v := u[key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestSystemdUnits(t *testing.T) {
	analyze := testenv.LookPath(t, "systemd-analyze")
	root := testenv.ModuleRoot(t)
	units, err := filepath.Glob(filepath.Join(root, "systemd/*.service"))
	if err != nil || len(units) == 0 {
		t.Fatalf("no systemd units (%v)", err)
	}
	// systemd-analyze verify checks that ExecStart's program exists, so the
	// units are verified as copies pointing at freshly built binaries.
	dir := t.TempDir()
	bindir := filepath.Join(dir, "bin")
	os.Mkdir(bindir, 0o755)
	var copies []string
	for _, path := range units {
		name := filepath.Base(path)
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		u := parseUnit(string(text))
		t.Run(name, func(t *testing.T) {
			for key, want := range map[string]string{
				"Service.DynamicUser":     "yes",
				"Service.NoNewPrivileges": "yes",
				"Service.ProtectSystem":   "strict",
				"Service.PrivateTmp":      "yes",
			} {
				if got := u.last(key); got != want {
					t.Errorf("%s=%q, want %q", key, got, want)
				}
			}
			if len(u["Service.CapabilityBoundingSet"]) == 0 {
				t.Error("no CapabilityBoundingSet")
			}
			if r := u.last("Service.Restart"); r == "" || r == "no" {
				t.Error("no Restart policy")
			}
			vars := map[string]string{"MAINPID": "1"}
			for _, e := range u["Service.Environment"] {
				k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
				vars[k] = v
			}
			exec := u.last("Service.ExecStart")
			expanded, err := ExpandEnv(exec, vars)
			if err != nil {
				t.Fatalf("ExecStart: %v", err)
			}
			words, err := SplitCommand(expanded)
			if err != nil || len(words) == 0 {
				t.Fatalf("ExecStart %q: %v", exec, err)
			}
			bin := binaryName(words[0])
			if bin == "" || !strings.HasPrefix(words[0], "/usr/local/bin/") {
				t.Fatalf("ExecStart runs %q, want /usr/local/bin/<one of our binaries>", words[0])
			}
			checkCommand(t, "systemd/"+name, bin, words[1:])
			r, _ := roleByName(bin)
			if !r.present(t) {
				t.Skipf("%s is not in the tree yet", bin)
			}
			if err := os.Symlink(testenv.Binary(t, r.pkg), filepath.Join(bindir, bin)); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
			cp := filepath.Join(dir, name)
			if err := os.WriteFile(cp, []byte(strings.ReplaceAll(string(text), "/usr/local/bin/", bindir+"/")), 0o644); err != nil {
				t.Fatal(err)
			}
			copies = append(copies, cp)
			// Exposure 2.0 or less on systemd's 0-10 scale (threshold is
			// in tenths).
			out := run(t, dir, nil, analyze, "security", "--offline=yes", "--threshold=20", cp)
			t.Logf("%s", lastLine(out))
		})
	}
	if len(copies) == 0 {
		return
	}
	// verify prints warnings (unknown keys, bad values) but still exits 0,
	// so any output at all is a failure.
	out := run(t, dir, nil, analyze, append([]string{"verify", "--man=no"}, copies...)...)
	if strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
