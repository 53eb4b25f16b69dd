package examples_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/cmd"
)

// ciScripts returns the shell scripts of a CI example: the run: steps of the GitHub Actions
// workflow, the script: lines of the GitLab CI job.
func ciScripts(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Jobs map[string]struct {
			Steps []struct {
				Run string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
		Canary struct {
			Script []string `yaml:"script"`
		} `yaml:"canary"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s is not valid YAML: %v", file, err)
	}
	var scripts []string
	for _, j := range doc.Jobs {
		for _, s := range j.Steps {
			scripts = append(scripts, s.Run)
		}
	}
	scripts = append(scripts, strings.Join(doc.Canary.Script, "\n"))
	return scripts
}

// TestCIExamples runs the canaryctl lines of each CI example as the job would, on free loopback
// ports and a shortened schedule: demo services in the background, the test's load generator in place
// of the curl line, then canaryctl run with the example's spec. A good canary must be promoted
// (exit 0, the job passes) and a canary answering with errors rolled back (exit 3, the job fails);
// both keep the JSON report, the JUnit file and the events that the jobs upload as artifacts.
func TestCIExamples(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file string
		badCanary  bool
		wantExit   int
		wantPhase  string
	}{
		{"github-actions promoted", "github-actions/canary.yml", false, cmd.ExitOK, "Promoted"},
		{"github-actions rolled back", "github-actions/canary.yml", true, cmd.ExitFail, "RolledBack"},
		{"gitlab-ci promoted", "gitlab-ci/.gitlab-ci.yml", false, cmd.ExitOK, "Promoted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lines := canaryctlLines(t, ciScripts(t, tc.file)...)
			runCIJob(t, lines, tc.badCanary, tc.wantExit, tc.wantPhase)
		})
	}
}

func runCIJob(t *testing.T, lines []shell, badCanary bool, wantExit int, wantPhase string) {
	dir := t.TempDir()
	var runs []shell
	var services []shell
	for _, sh := range lines {
		switch {
		case len(sh.args) > 1 && sh.args[1] == "demo-service":
			if !sh.background {
				t.Fatalf("%q: a service must run in the background (&)", sh.line)
			}
			services = append(services, sh)
		case len(sh.args) > 1 && sh.args[1] == "run":
			runs = append(runs, sh)
		case len(sh.args) > 1 && sh.args[1] == "version":
			var out syncBuffer
			if code := canaryctl(t.Context(), sh.args[1:], nil, &out, &out); code != 0 || !strings.Contains(out.String(), "commit:") {
				t.Fatalf("%q: exit %d\n%s", sh.line, code, out.String())
			}
		default:
			t.Fatalf("%q: the example test does not know this command", sh.line)
		}
	}
	if len(runs) != 1 || len(services) != 3 {
		t.Fatalf("want 3 demo services and 1 canaryctl run, got %d and %d", len(services), len(runs))
	}
	run := runs[0]

	// The spec the job names, with every loopback port moved to a free one and a short schedule.
	specPath := flagValue(run.args, "--spec")
	spec := readYAML(t, repoPath(specPath))
	ports := map[int]int{}
	move := func(addr string) string {
		old := portOf(t, addr)
		if ports[old] == 0 {
			ports[old] = freePort(t)
		}
		return strings.Replace(addr, ":"+strconv.Itoa(old), ":"+strconv.Itoa(ports[old]), 1)
	}
	roles := map[int]string{}
	setAddrs := func(m map[string]any, role string) {
		var out []any
		for _, a := range m["addresses"].([]any) {
			moved := move(a.(string))
			roles[portOf(t, a.(string))] = role
			out = append(out, moved)
		}
		m["addresses"] = out
	}
	setAddrs(spec["stable"].(map[string]any), "stable")
	deploy := spec["deploy"].(map[string]any)
	setAddrs(deploy["baseline"].(map[string]any), "baseline")
	setAddrs(deploy["canary"].(map[string]any), "canary")
	gw := spec["gateway"].(map[string]any)
	gw["listen"] = move(gw["listen"].(string))
	shorten(spec)
	tmpSpec := filepath.Join(dir, "rollout.yaml")
	writeYAML(t, tmpSpec, spec)

	// The services, as the job starts them (the canary with errors for the rollback case).
	ctx, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	seen := map[string]bool{}
	for _, sh := range services {
		port, err := strconv.Atoi(flagValue(sh.args, "--port"))
		if err != nil || ports[port] == 0 {
			t.Fatalf("%q: --port is not one of the spec's addresses", sh.line)
		}
		role := roles[port]
		seen[role] = true
		args := setFlag(sh.args[1:], "--port", strconv.Itoa(ports[port]))
		if role == "canary" && badCanary {
			args = append(args, "--behaviour", "errors", "--error-share", "0.5")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out syncBuffer
			if code := canaryctl(ctx, args, nil, &out, &out); code != 0 {
				t.Errorf("%q: exit %d\n%s", sh.line, code, out.String())
			}
		}()
		waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[port]))
	}
	if !seen["stable"] || !seen["baseline"] || !seen["canary"] {
		t.Fatalf("the job must start stable, baseline and canary; it starts %v", seen)
	}
	wg.Add(1)
	go func() { defer wg.Done(); load(ctx, "http://"+gw["listen"].(string)+"/", 300, 20000) }()

	// canaryctl run, with the job's flags; relative output files land in the temp dir.
	args := setFlag(run.args[1:], "--spec", tmpSpec)
	for _, f := range []string{"--junit", "--events"} {
		if v := flagValue(args, f); v != "" {
			args = setFlag(args, f, filepath.Join(dir, v))
		}
	}
	var stdout, stderr syncBuffer
	code := canaryctl(t.Context(), args, map[string]string{"CANARYCTL_STATE_DIR": filepath.Join(dir, ".canaryctl")}, &stdout, &stderr)
	if code != wantExit {
		t.Fatalf("%q: exit %d, want %d\nstderr:\n%s", run.line, code, wantExit, stderr.String())
	}
	// The artifacts the job keeps.
	if run.stdout == "" || flagValue(run.args, "-o") != "json" {
		t.Fatalf("%q: the job must keep the JSON report (-o json > FILE)", run.line)
	}
	var report struct {
		Phase string `json:"phase"`
		Steps []any  `json:"steps"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &report); err != nil || report.Phase != wantPhase {
		t.Fatalf("report (%v): phase %q, want %q\n%s\nstderr:\n%s", err, report.Phase, wantPhase, stdout.String(), stderr.String())
	}
	junit := flagValue(args, "--junit")
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatalf("--junit file: %v", err)
	}
	var suites struct {
		XMLName xml.Name
	}
	if err := xml.Unmarshal(b, &suites); err != nil || !slices.Contains([]string{"testsuites", "testsuite"}, suites.XMLName.Local) {
		t.Fatalf("JUnit file (%v):\n%s", err, b)
	}
	if ev, err := os.ReadFile(flagValue(args, "--events")); err != nil || len(ev) == 0 {
		t.Fatalf("--events file: %v (%d bytes)", err, len(ev))
	}
}
