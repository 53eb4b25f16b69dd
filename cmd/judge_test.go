package cmd_test

import (
	"bytes"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/cmd"
)

// The golden files are rewritten with `go test ./cmd -run TestJudge -update`. The flag is shared with
// other golden tests of the package (and with charmbracelet's golden package), so it is registered only
// if nobody did yet.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func judgeUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

const (
	judgeExampleConfig = "../testdata/judge/canary-config.json"
	judgeExamplePairs  = "../testdata/judge/metric-pairs.json" // canary clearly worse: Fail
	judgePassPairs     = "testdata/judge/pass-pairs.json"
	judgeMarginalPairs = "testdata/judge/marginal-pairs.json"
)

type judgeRun struct {
	code           int
	stdout, stderr string
}

func runJudgeCmd(t *testing.T, terminal bool, stdin string, args ...string) judgeRun {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cmd.Env{
		Stdin:            strings.NewReader(stdin),
		Stdout:           &out,
		Stderr:           &errb,
		StdoutIsTerminal: terminal,
		Getenv:           func(string) string { return "" },
		Now:              func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) },
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	code := cmd.Run(t.Context(), env, append([]string{"judge"}, args...))
	return judgeRun{code: code, stdout: out.String(), stderr: errb.String()}
}

func judgeGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "judge", name)
	if judgeUpdate() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update if intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestJudgeCmdGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		terminal bool
		args     []string
		code     int
		golden   string
	}{
		{"fail-json", false, []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeExamplePairs, "-o", "json"}, cmd.ExitFail, "fail.json.golden"},
		{"fail-text", false, []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeExamplePairs, "-o", "text"}, cmd.ExitFail, "fail.txt.golden"},
		{"terminal-defaults-to-text", true, []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeExamplePairs}, cmd.ExitFail, "fail.txt.golden"},
		{"pipe-defaults-to-json", false, []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeExamplePairs}, cmd.ExitFail, "fail.json.golden"},
		{"pass-text", false, []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgePassPairs, "-o", "text"}, cmd.ExitOK, "pass.txt.golden"},
		{"marginal-text", false, []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeMarginalPairs, "-o", "text"}, cmd.ExitMarginal, "marginal.txt.golden"},
		{"marginal-json", false, []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeMarginalPairs, "-o", "json"}, cmd.ExitMarginal, "marginal.json.golden"},
		// 50 is Marginal at 75/50 but Pass at --pass 50.
		{"marginal-passes-lower-bar", false, []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeMarginalPairs, "-o", "text",
			"--pass", "50", "--marginal", "25"}, cmd.ExitOK, "marginal-pass50.txt.golden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !judgeUpdate() {
				t.Parallel()
			}
			r := runJudgeCmd(t, tc.terminal, "", tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			if r.stderr != "" {
				t.Errorf("stderr %q, want nothing (the verdict is the exit code)", r.stderr)
			}
			judgeGolden(t, tc.golden, r.stdout)
		})
	}
}

func TestJudgeCmdStdin(t *testing.T) {
	t.Parallel()
	pairs, err := os.ReadFile(judgeExamplePairs)
	if err != nil {
		t.Fatal(err)
	}
	r := runJudgeCmd(t, false, string(pairs), "--canary-config", judgeExampleConfig, "--metric-pairs", "-", "-o", "json")
	if r.code != cmd.ExitFail || !strings.Contains(r.stdout, `"judgeName": "NetflixACAJudge-v1.0"`) {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestJudgeCmdSeed: two constant samples get Kayenta's random noise; --seed makes it reproducible.
func TestJudgeCmdSeed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.json")
	pairs := filepath.Join(dir, "p.json")
	if err := os.WriteFile(cfg, []byte(`{"metrics": [{"name": "m", "groups": ["g"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pairs, []byte(`[{"name": "m", "values": {"control": [1, 1, 1, 1, 1], "experiment": [10, 10, 10, 10, 10]}}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(seed string) judgeRun {
		return runJudgeCmd(t, false, "", "--canary-config", cfg, "--metric-pairs", pairs, "-o", "json", "--seed", seed)
	}
	a, b, c := run("7"), run("7"), run("8")
	if a.code != cmd.ExitFail || a.stdout != b.stdout || a.stdout == c.stdout || !strings.Contains(a.stdout, `"classification": "High"`) {
		t.Errorf("seed 7 twice and seed 8: exit %d\n%s\n%s\n%s", a.code, a.stdout, b.stdout, c.stdout)
	}
}

func TestJudgeCmdErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badDirection := write("bad-direction.json", `{"metrics": [{"name": "p99-latency"}, {"name": "5xx-rate",
		"analysisConfigurations": {"canary": {"direction": "Increase"}}}]}`)
	badBool := write("bad-bool.json", `{"metrics": [{"name": "p99-latency", "analysisConfigurations": {"canary": {"critical": "true"}}}]}`)
	notJSON := write("not-json.json", "metrics:\n  - name: a\n")
	otherMetric := write("other-metric.json", `{"metrics": [{"name": "p99-latency"}]}`)
	nullPoint := write("null-point.json", `[{"name": "p99-latency", "values": {"control": [1, 2], "experiment": [1, null]}}]`)

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string // substrings of the one-line error
	}{
		{"wrong-case-direction", []string{"--canary-config", badDirection, "--metric-pairs", judgeExamplePairs}, cmd.ExitUsage,
			[]string{"metrics[1].analysisConfigurations.canary.direction", `"Increase"`, `"increase"`}},
		{"string-boolean", []string{"--canary-config", badBool, "--metric-pairs", judgeExamplePairs}, cmd.ExitUsage,
			[]string{"metrics[0].analysisConfigurations.canary.critical", `"true"`}},
		{"not-json", []string{"--canary-config", notJSON, "--metric-pairs", judgeExamplePairs}, cmd.ExitUsage,
			[]string{"not-json.json", "invalid JSON at line 1"}},
		{"pair-without-metric", []string{"--canary-config", otherMetric, "--metric-pairs", judgeExamplePairs}, cmd.ExitUsage,
			[]string{"[1].name", `"5xx-rate" has no metric`}},
		{"null-data-point", []string{"--canary-config", judgeExampleConfig, "--metric-pairs", nullPoint}, cmd.ExitUsage,
			[]string{"[0].values.experiment[1]", "null"}},
		{"pass-above-100", []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeExamplePairs, "--pass", "101"}, cmd.ExitUsage,
			[]string{"--pass", "between 0 and 100"}},
		{"marginal-above-pass", []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeExamplePairs, "--pass", "60", "--marginal", "70"},
			cmd.ExitUsage, []string{"--marginal", "marginal <= pass"}},
		{"unknown-output", []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeExamplePairs, "-o", "yaml"}, cmd.ExitUsage,
			[]string{`"yaml"`, "json or text"}},
		{"missing-config-flag", []string{"--metric-pairs", judgeExamplePairs}, cmd.ExitUsage, []string{"--canary-config is required"}},
		{"missing-pairs-flag", []string{"--canary-config", judgeExampleConfig}, cmd.ExitUsage, []string{"--metric-pairs is required"}},
		{"both-stdin", []string{"--canary-config", "-", "--metric-pairs", "-"}, cmd.ExitUsage, []string{"stdin"}},
		{"bad-flag-value", []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeExamplePairs, "--pass", "high"}, cmd.ExitUsage,
			[]string{"--pass"}},
		{"extra-argument", []string{"--canary-config", judgeExampleConfig, "--metric-pairs", judgeExamplePairs, "extra"}, cmd.ExitUsage, nil},
		{"missing-file", []string{"--canary-config", filepath.Join(dir, "nope.json"), "--metric-pairs", judgeExamplePairs}, cmd.ExitUsage,
			[]string{"--canary-config", "nope.json", "no such file"}},
		{"missing-pairs-file", []string{"--canary-config", judgeExampleConfig, "--metric-pairs", filepath.Join(dir, "nope.json")}, cmd.ExitUsage,
			[]string{"--metric-pairs", "nope.json", "no such file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runJudgeCmd(t, false, "", tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "canaryctl: ") {
				t.Errorf("stderr %q, want one line", r.stderr)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr %q lacks %q", r.stderr, s)
				}
			}
		})
	}
}
