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

	// The spec the job names; its services' ports say which role each demo-service line starts.
	specPath := flagValue(run.args, "--spec")
	spec := readYAML(t, repoPath(specPath))
	deploy := spec["deploy"].(map[string]any)
	gw := spec["gateway"].(map[string]any)
	roles := map[int]string{}
	for role, m := range map[string]any{"stable": spec["stable"], "baseline": deploy["baseline"], "canary": deploy["canary"]} {
		for _, a := range m.(map[string]any)["addresses"].([]any) {
			roles[portOf(t, a.(string))] = role
		}
	}

	// The services, as the job starts them (the canary with errors for the rollback case), each on a
	// port it binds itself (--port 0) and reports in its --addr-file once listening.
	ctx, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	ports := map[int]int{}
	seen := map[string]bool{}
	for i, sh := range services {
		port, err := strconv.Atoi(flagValue(sh.args, "--port"))
		if err != nil || roles[port] == "" {
			t.Fatalf("%q: --port is not one of the spec's addresses", sh.line)
		}
		role := roles[port]
		seen[role] = true
		addrFile := filepath.Join(dir, fmt.Sprintf("service-%d.addr", i))
		args := append(setFlag(sh.args[1:], "--port", "0"), "--addr-file", addrFile)
		if role == "canary" && badCanary {
			args = append(args, "--behaviour", "errors", "--error-share", "0.5")
		}
		exited := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(exited)
			var out syncBuffer
			if code := canaryctl(ctx, args, nil, &out, &out); code != 0 {
				t.Errorf("%q: exit %d\n%s", sh.line, code, out.String())
			}
		}()
		ports[port] = portOf(t, waitAddrFile(t, addrFile, exited))
	}
	move := func(addr string) string {
		old := portOf(t, addr)
		if ports[old] == 0 {
			t.Fatalf("%s: no demo-service line of the job listens on port %d", specPath, old)
		}
		return strings.Replace(addr, ":"+strconv.Itoa(old), ":"+strconv.Itoa(ports[old]), 1)
	}
	setAddrs := func(m map[string]any) {
		var out []any
		for _, a := range m["addresses"].([]any) {
			out = append(out, move(a.(string)))
		}
		m["addresses"] = out
	}
	setAddrs(spec["stable"].(map[string]any))
	setAddrs(deploy["baseline"].(map[string]any))
	setAddrs(deploy["canary"].(map[string]any))
	// The embedded proxy binds a free port too; the run names it on stderr ("embedded proxy on").
	gw["listen"] = strings.Replace(gw["listen"].(string), ":"+strconv.Itoa(portOf(t, gw["listen"].(string))), ":0", 1)
	shorten(spec)
	tmpSpec := filepath.Join(dir, "rollout.yaml")
	writeYAML(t, tmpSpec, spec)
	if !seen["stable"] || !seen["baseline"] || !seen["canary"] {
		t.Fatalf("the job must start stable, baseline and canary; it starts %v", seen)
	}
	// canaryctl run, with the job's flags; relative output files land in the temp dir.
	args := setFlag(run.args[1:], "--spec", tmpSpec)
	for _, f := range []string{"--junit", "--events"} {
		if v := flagValue(args, f); v != "" {
			args = setFlag(args, f, filepath.Join(dir, v))
		}
	}
	var stdout, stderr syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- canaryctl(t.Context(), args, map[string]string{"CANARYCTL_STATE_DIR": filepath.Join(dir, ".canaryctl")}, &stdout, &stderr)
	}()
	code, proxyURL := waitProxyURL(&stderr, exited)
	if proxyURL != "" { // the test's load in place of the job's curl line, once the proxy listens
		wg.Add(1)
		go func() { defer wg.Done(); load(ctx, proxyURL+"/", 300, 20000) }()
		code = <-exited
	}
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
