package e2e

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
)

// A newcomer's first hour, on the built binary: the tests here are fast (no rollout runs longer
// than a deploy that fails) and run in make ci; the slow rollouts are in make e2e.

// writeFile writes content to name in a temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// typo is the spec: every kind of YAML problem at once, and two semantic ones.
const typo = `service: web
stabel:
  addresses: ["http://127.0.0.1:9001"]
gateway: {type: builtin, listen: 127.0.0.1:0}
steps:
  - wieght: 10
    duration: 5
  - weight: "ten"
    interval: 1m
analysis:
  thresholds: {pass: 95, marginal: lots}
`

// problemLine is "path (line N): what is wrong; how to fix it".
var problemLine = regexp.MustCompile(`^canaryctl: [a-zA-Z][\w.\[\]]* \(line \d+\): [^;]+; .+$`)

func TestValidateReportsEveryProblemOnItsOwnLine(t *testing.T) {
	skipShort(t)
	t.Parallel()
	spec := writeFile(t, "typo.yaml", typo)
	for _, args := range [][]string{{"validate", "--spec", spec}, {"run", "--spec", spec, "--dry-run"}, {"run", "--spec", spec, "--state-dir", t.TempDir()}} {
		t.Run(args[0]+" "+strings.Join(args[3:], " "), func(t *testing.T) {
			t.Parallel()
			r := run(t, 30*time.Second, nil, args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			want := []string{
				`stabel (line 2): unknown field "stabel"; did you mean stable?`,
				`steps[0].wieght (line 6): unknown field "wieght"; did you mean weight?`,
				`steps[0].duration (line 7): 5 has no unit`,
				`steps[1].weight (line 8): "ten" is not a number; write the canary's share in percent`,
				`analysis.thresholds.marginal (line 11): "lots" is not a number`,
			}
			if len(lines) != len(want)+1 || !strings.Contains(lines[0], "is not a valid spec (5 problems, one per line)") {
				t.Fatalf("want a header and %d problems, one per line; got:\n%s", len(want), r.stderr)
			}
			for i, w := range want {
				if !strings.HasPrefix(lines[i+1], "canaryctl: "+w) || !problemLine.MatchString(lines[i+1]) {
					t.Errorf("line %d = %q, want %q...", i+2, lines[i+1], w)
				}
			}
			for _, goName := range []string{"time.Duration", "rollout.", "float64", "!!str", "unmarshal"} {
				if strings.Contains(r.stderr, goName) {
					t.Errorf("stderr names Go or YAML internals (%s):\n%s", goName, r.stderr)
				}
			}
		})
	}
}

func TestValidateSemanticProblemsOnePerLine(t *testing.T) {
	skipShort(t)
	t.Parallel()
	spec := writeFile(t, "sem.yaml", `service: Web
stable: {addresses: ["http://127.0.0.1:9001"]}
deploy:
  baseline: {type: static, addresses: ["http://127.0.0.1:9002"]}
  canary: {type: static, addresses: ["http://127.0.0.1:9003"]}
gateway: {type: builtin, listen: 127.0.0.1:0}
steps:
  - {weight: 10, duration: 5s}
  - {weight: 5, interval: 1s}
`)
	r := run(t, 30*time.Second, nil, "validate", "--spec", spec)
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != 2 || len(lines) != 5 {
		t.Fatalf("exit %d, want 2 with a header and 4 problems; stderr:\n%s", r.code, r.stderr)
	}
	for _, l := range lines[1:] {
		if !problemLine.MatchString(l) || strings.Contains(l, "m0s") {
			t.Errorf("not 'path (line N): what; fix' in the spec's words: %q", l)
		}
	}
}

func TestValidateGoodSpecPrintsThePlan(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, args := range [][]string{{"validate", "--spec", "../examples/rollout.yaml"}, {"run", "--spec", "../examples/rollout.yaml", "--dry-run"}} {
		r := run(t, 30*time.Second, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "../examples/rollout.yaml is valid: service checkout") ||
			!strings.Contains(r.stdout, "step 1/3: 2.5% canary") || r.stderr != "" {
			t.Errorf("%v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestOutputsExistWhateverHappens: -o json, --junit and --spinnaker are written for a spec error
// (exit 2) and for a deploy that fails before any traffic moved (NotStarted, exit 5), so that CI
// keeps its artifacts exactly when it needs them.
func TestOutputsExistWhateverHappens(t *testing.T) {
	skipShort(t)
	t.Parallel()
	broken := writeFile(t, "broken.yaml", `version: 1
service: broken
stable: {addresses: ["http://127.0.0.1:1"]}
deploy:
  baseline: {type: exec, command: "exit 7", teardown: "true", addresses: ["http://127.0.0.1:2"]}
  canary: {type: exec, command: "exit 7", teardown: "true", addresses: ["http://127.0.0.1:3"]}
gateway: {type: builtin, listen: "127.0.0.1:0"}
steps:
  - {weight: 10, warmup: 0s, interval: 10s, duration: 10s}
`)
	for _, tc := range []struct {
		name, spec, service string
		code                int
		errors              []string
	}{
		{"spec error", writeFile(t, "typo.yaml", typo), "web", 2, []string{`stabel (line 2): unknown field "stabel"`, "steps[1].weight (line 8)"}},
		{"deploy failed before traffic", broken, "broken", 5, []string{`deploy command "exit 7": exit status 7`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			junit := filepath.Join(dir, "junit.xml")
			r := run(t, time.Minute, nil, "run", "--spec", tc.spec, "--state-dir", dir, "-o", "json", "--junit", junit, "--spinnaker")
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, tc.code, r.stderr)
			}
			dec := json.NewDecoder(strings.NewReader(r.stdout))
			var rep rollout.Report
			if err := dec.Decode(&rep); err != nil {
				t.Fatalf("-o json: %v\n%s", err, r.stdout)
			}
			if rep.Phase != rollout.NotStarted || rep.Service != tc.service || !containsAll(strings.Join(rep.Errors, "\n"), tc.errors) {
				t.Errorf("report: phase %s service %q errors %q", rep.Phase, rep.Service, rep.Errors)
			}
			rest := strings.TrimSpace(r.stdout[dec.InputOffset():])
			if !strings.HasPrefix(rest, rollout.SpinnakerPrefix+`{"service":"`+tc.service+`"`) || !strings.Contains(rest, `"phase":"NotStarted"`) ||
				!strings.Contains(rest, `"errors":[`) || strings.Count(rest, "\n") != 0 {
				t.Errorf("spinnaker line: %q", rest)
			}
			b, err := os.ReadFile(junit)
			if err != nil {
				t.Fatalf("--junit file: %v", err)
			}
			var suites struct {
				Failures int `xml:"failures,attr"`
			}
			if err := xml.Unmarshal(b, &suites); err != nil || suites.Failures != 1 || !strings.Contains(string(b), `type="NotStarted"`) {
				t.Errorf("junit (%v):\n%s", err, b)
			}
			// One final line: the reason is not repeated by an error line after the summary.
			if tc.code == 5 {
				last := lastLine(r.stderr)
				if !strings.HasPrefix(last, "broken: NotStarted (could not run the rollout; no traffic reached the canary") || strings.Count(r.stderr, "exit status 7") > 3 {
					t.Errorf("final line %q; stderr:\n%s", last, r.stderr)
				}
				// status and watch tell the same story from the state directory.
				if st := run(t, 30*time.Second, nil, "status", "broken", "--state-dir", dir); !strings.Contains(st.stdout, "(not started: it could not run") {
					t.Errorf("status:\n%s", st.stdout)
				}
				if w := run(t, 30*time.Second, nil, "watch", "broken", "--state-dir", dir); w.code != 5 {
					t.Errorf("watch of a rollout that never started: exit %d, want 5; stderr:\n%s", w.code, w.stderr)
				}
			}
		})
	}
}

// TestMissingInputFilesExit2: every command that reads a file the user named exits 2 when it is
// missing, naming the flag and the file.
func TestMissingInputFilesExit2(t *testing.T) {
	skipShort(t)
	t.Parallel()
	nope := filepath.Join(t.TempDir(), "nope")
	for _, args := range [][]string{
		{"run", "--spec", nope + ".yaml"},
		{"validate", "--spec", nope + ".yaml"},
		{"judge", "--canary-config", nope + ".json", "--metric-pairs", "../testdata/judge/metric-pairs.json"},
		{"judge", "--canary-config", "../testdata/judge/canary-config.json", "--metric-pairs", nope + ".json"},
		{"analyze", "--prometheus", "http://127.0.0.1:1", "--spec", nope + ".yaml", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T00:10:00Z"},
		{"proxy", "--config", nope + ".yaml"},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			t.Parallel()
			r := run(t, 30*time.Second, nil, args...)
			if r.code != 2 || !strings.Contains(r.stderr, "nope") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("%v: exit %d, want 2 with one line naming the file; stderr:\n%s", args, r.code, r.stderr)
			}
		})
	}
}

// TestCompletesFlagValues: shell completion offers the values of the flags that have a fixed set.
func TestCompletesFlagValues(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "demo", "--scenario", ""}, []string{"good", "slow", "errors", "route"}},
		{[]string{"__complete", "demo", "-o", ""}, []string{"text", "json"}},
		{[]string{"__complete", "run", "-o", ""}, []string{"text", "json"}},
	} {
		r := run(t, 30*time.Second, nil, tc.args...)
		if r.code != 0 || !containsAll(r.stdout, tc.want) {
			t.Errorf("%v: exit %d, completions:\n%s", tc.args, r.code, r.stdout)
		}
	}
}

// TestHelpTellsTheNewcomer: what the README and the CI examples rely on is in --help.
func TestHelpTellsTheNewcomer(t *testing.T) {
	skipShort(t)
	t.Parallel()
	if r := run(t, 30*time.Second, nil, "--help"); !containsAll(r.stdout, []string{"demo-service", "validate"}) {
		t.Errorf("canaryctl --help lacks demo-service or validate:\n%s", r.stdout)
	}
	if r := run(t, 30*time.Second, nil, "proxy", "--stable", "http://127.0.0.1:1", "--canary", "http://127.0.0.1:2", "--canary-percent", "2.5"); r.code != 2 ||
		!strings.Contains(r.stderr, "--admin-insecure") {
		t.Errorf("proxy without a token: exit %d, want 2 naming --admin-insecure; stderr:\n%s", r.code, r.stderr)
	}
	if r := run(t, 30*time.Second, nil, "analyze", "--help"); !strings.Contains(r.stdout, "with --spec: the spec's analysis.thresholds.pass") {
		t.Errorf("analyze --help does not say --spec sets the thresholds:\n%s", r.stdout)
	}
}

func containsAll(s string, subs []string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestDemoOutputsWhenItCannotStart: the demo's -o json and --spinnaker exist when it cannot even
// start (a state directory that cannot be created), with phase NotStarted and exit 5.
func TestDemoOutputsWhenItCannotStart(t *testing.T) {
	skipShort(t)
	t.Parallel()
	r := run(t, 30*time.Second, nil, "demo", "--state-dir", "/proc/canaryctl-cannot-create", "-o", "json", "--spinnaker")
	if r.code != 5 || !strings.Contains(r.stdout, `"phase": "NotStarted"`) || !strings.Contains(r.stdout, rollout.SpinnakerPrefix+`{"service":"demo"`) {
		t.Errorf("exit %d, want 5 with a NotStarted report and Spinnaker line\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}
