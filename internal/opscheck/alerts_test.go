package opscheck

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// alertRule is the part of a Prometheus alerting rule the checks need.
type alertRule struct {
	Alert  string            `json:"alert"`
	Labels map[string]string `json:"labels"`
}

// alertScenario is a state of the system, as the binaries really exported
// it, and what the example alert rules must make of it once it has lasted
// longer than any rule's "for".
type alertScenario struct {
	name string
	// bodies are the scraped expositions, by Prometheus job.
	bodies map[string]string
	// firing maps an alert to the job whose target it must name.
	firing map[string]string
	// silent are alerts that must not fire.
	silent []string
}

// scenarioMinutes is how long a scenario's state lasts, beyond every
// rule's "for" (30 minutes at most).
const scenarioMinutes = 60

// yamlToJSON converts YAML to JSON with Debian's python3-yaml (a
// dependency of docker-compose).
func yamlToJSON(t *testing.T, text string) []byte {
	t.Helper()
	cmd := cleanEnvCommand("/usr/bin/python3", "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)")
	cmd.Stdin = strings.NewReader(text)
	js, err := cmd.Output()
	if err != nil {
		t.Fatalf("yaml to json: %v", err)
	}
	return js
}

// checkAlertScenario runs `promtool test rules` on the example alert rules
// with the scenario's samples held constant, each target "up", and fails
// the test for every alert that does not fire, or fires, against the
// scenario.
func checkAlertScenario(t *testing.T, promtool string, sc alertScenario) {
	t.Helper()
	dir := t.TempDir()
	rules := alertRules(t, dir)

	// Every target gets its job and an instance, as a scrape would add.
	instance := func(job string) string { return job + ".invalid:443" }
	var series []map[string]string
	jobs := make([]string, 0, len(sc.bodies))
	for job := range sc.bodies {
		jobs = append(jobs, job)
	}
	sort.Strings(jobs)
	for _, job := range jobs {
		extra := fmt.Sprintf(`job=%q,instance=%q`, job, instance(job))
		series = append(series, map[string]string{"series": "up{" + extra + "}", "values": fmt.Sprintf("1x%d", scenarioMinutes)})
		samples, err := exposedSamples(sc.bodies[job])
		if err != nil {
			t.Fatalf("%s: %s: %v", sc.name, job, err)
		}
		for _, s := range samples {
			series = append(series, map[string]string{
				"series": withLabels(s.series, extra),
				"values": fmt.Sprintf("%sx%d", s.value, scenarioMinutes),
			})
		}
	}

	type expAlert struct {
		Labels map[string]string `json:"exp_labels"`
	}
	type ruleTest struct {
		EvalTime  string     `json:"eval_time"`
		Alertname string     `json:"alertname"`
		ExpAlerts []expAlert `json:"exp_alerts"`
	}
	var tests []ruleTest
	evalTime := fmt.Sprintf("%dm", scenarioMinutes)
	for _, name := range sortedKeys(sc.firing) {
		r, ok := rules[name]
		if !ok {
			t.Errorf("%s: no alert rule %s", sc.name, name)
			continue
		}
		job := sc.firing[name]
		labels := map[string]string{"job": job, "instance": instance(job)}
		for k, v := range r.Labels {
			labels[k] = v
		}
		tests = append(tests, ruleTest{evalTime, name, []expAlert{{labels}}})
	}
	for _, name := range sc.silent {
		if _, ok := rules[name]; !ok {
			t.Errorf("%s: no alert rule %s", sc.name, name)
			continue
		}
		tests = append(tests, ruleTest{evalTime, name, []expAlert{}})
	}
	unit := map[string]any{
		"rule_files":          []string{filepath.Join(dir, "rules.json")},
		"evaluation_interval": "1m",
		"tests": []map[string]any{{
			"interval":        "1m",
			"input_series":    series,
			"alert_rule_test": tests,
		}},
	}
	js, err := json.Marshal(unit)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "unit.json")
	if err := os.WriteFile(path, js, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := cleanEnvCommand(promtool, "test", "rules", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: the example alert rules do not fire as they should on the binaries' real metrics (%v):\n%s", sc.name, err, out)
	}
}

// alertRules writes the example alert rules, without their annotations
// (which promtool would otherwise require the test to repeat word for
// word), to dir/rules.json, and returns the rules by alert name.
func alertRules(t *testing.T, dir string) map[string]alertRule {
	t.Helper()
	var file struct {
		Groups []struct {
			Name  string           `json:"name"`
			Rules []map[string]any `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(yamlToJSON(t, repoFile(t, "doc/examples/snowflake-alerts.yml")), &file); err != nil {
		t.Fatalf("snowflake-alerts.yml: %v", err)
	}
	rules := map[string]alertRule{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			delete(r, "annotations")
			b, _ := json.Marshal(r)
			var ar alertRule
			if err := json.Unmarshal(b, &ar); err != nil {
				t.Fatalf("snowflake-alerts.yml: rule %v: %v", r, err)
			}
			if ar.Alert != "" {
				rules[ar.Alert] = ar
			}
		}
	}
	js, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	return rules
}

// sample is one line of a text exposition: the series, as PromQL writes a
// selector, and its value.
type sample struct{ series, value string }

// exposedSamples returns the finite samples of our metrics in a text
// exposition.
func exposedSamples(body string) ([]sample, error) {
	var out []sample
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.LastIndex(line, "} ") + 1
		if end == 0 {
			end = strings.IndexByte(line, ' ')
		}
		if end <= 0 {
			return nil, fmt.Errorf("no value in %q", line)
		}
		series := line[:end]
		name := series[:strings.IndexByte(series+"{", '{')]
		if loc := metricRef.FindStringIndex(name); loc == nil || loc[0] != 0 || loc[1] != len(name) {
			continue // another metric, with one of ours in a label
		}
		value, _, _ := strings.Cut(strings.TrimSpace(line[end:]), " ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("bad value in %q: %v", line, err)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		out = append(out, sample{series, value})
	}
	return out, nil
}

// withLabels adds the label pairs extra to a series.
func withLabels(series, extra string) string {
	if base, ok := strings.CutSuffix(series, "}"); ok {
		return base + "," + extra + "}"
	}
	return series + "{" + extra + "}"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestExposedSamples(t *testing.T) {
	body := "# HELP snowflake_x x\n# TYPE snowflake_x counter\n" +
		"snowflake_x{a=\"1\",b=\"x} y\"} 8\n" +
		"snowflake_clients_waiting 0\n" +
		"go_goroutines 12\n" +
		"go_info{version=\"snowflake_x\"} 1\n" +
		"tor_snowflake_proxy_polls_total 3 1700000000000\n" +
		"snowflake_nan NaN\n"
	got, err := exposedSamples(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []sample{
		{`snowflake_x{a="1",b="x} y"}`, "8"},
		{"snowflake_clients_waiting", "0"},
		{"tor_snowflake_proxy_polls_total", "3"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := withLabels(`a{b="c"}`, `job="j"`); got != `a{b="c",job="j"}` {
		t.Errorf("withLabels = %s", got)
	}
	if got := withLabels("a", `job="j"`); got != `a{job="j"}` {
		t.Errorf("withLabels = %s", got)
	}
}
