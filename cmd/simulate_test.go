package cmd_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/cmd"
	"github.com/canaryctl/canaryctl/rollout/sim"
)

func runSimulate(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cmd.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: os.Getenv, Now: time.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	code = cmd.Run(t.Context(), env, append([]string{"simulate"}, args...))
	return code, out.String(), errb.String()
}

const (
	aaScenario = "../testdata/scenarios/aa-ideal.yaml"
	abScenario = "../testdata/scenarios/ab-10pct-5xx-200rps.yaml"
)

func TestSimulateCmd(t *testing.T) {
	t.Parallel()
	t.Run("markdown", func(t *testing.T) {
		t.Parallel()
		code, out, errs := runSimulate(t, "--scenario", aaScenario, "--scenario", abScenario, "--rollouts", "3", "--seed", "3")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		for _, want := range []string{sim.TableHeader, "| aa-ideal | 200 req/s | good | sequential α=0.01 |",
			"| ab-10pct-5xx-200rps | 200 req/s | bad |", "3 rollouts per scenario, seed 3"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("json with overrides", func(t *testing.T) {
		t.Parallel()
		code, out, errs := runSimulate(t, "--scenario", abScenario, "--rollouts", "2", "-o", "json", "--mode", "kayenta", "--rps", "100")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var rep sim.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		if len(rep.Results) != 1 || rep.Results[0].Mode != "kayenta" || rep.Results[0].RPS != 100 || rep.Results[0].Rollouts != 2 {
			t.Errorf("unexpected report %+v", rep)
		}
	})
	t.Run("readme table rewritten", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "README.md")
		doc := "# x\n\nbefore\n" + sim.TableBegin + "\nold table\n" + sim.TableEnd + "\nafter\n"
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errs := runSimulate(t, "--scenario", abScenario, "--rollouts", "2", "--readme", path)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		got, _ := os.ReadFile(path)
		if !strings.HasPrefix(string(got), "# x\n\nbefore\n"+sim.TableBegin+"\n") || !strings.HasSuffix(string(got), sim.TableEnd+"\nafter\n") ||
			strings.Contains(string(got), "old table") || !strings.Contains(string(got), "| ab-10pct-5xx-200rps |") {
			t.Errorf("README not rewritten between the markers:\n%s", got)
		}
	})
	t.Run("results saved, then rendered with --from", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		results, readme := filepath.Join(dir, "results.json"), filepath.Join(dir, "README.md")
		if err := os.WriteFile(readme, []byte(sim.TableBegin+"\nold\n"+sim.TableEnd+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errs := runSimulate(t, "--scenario", abScenario, "--rollouts", "2", "--results", results)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		code, again, errs := runSimulate(t, "--from", results, "--readme", readme)
		if code != 0 {
			t.Fatalf("--from: exit %d: %s", code, errs)
		}
		if again != out {
			t.Errorf("--from printed\n%s\nthe simulation printed\n%s", again, out)
		}
		got, _ := os.ReadFile(readme)
		if want := sim.TableBegin + "\n" + out + sim.TableEnd + "\n"; string(got) != want {
			t.Errorf("README after --from:\n%s\nwant\n%s", got, want)
		}
		raw, _ := os.ReadFile(results)
		var rep sim.Report
		if err := json.Unmarshal(raw, &rep); err != nil || rep.CPUSeconds <= 0 || rep.Results[0].ScenarioSHA256 == "" {
			t.Errorf("results file: %v, cpuSeconds %v, scenario sha256 %q", err, rep.CPUSeconds, rep.Results[0].ScenarioSHA256)
		}
	})
}

func TestSimulateCmdUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badField := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badField, []byte("expect: promote\nrate: {rps: -3}\nlatency: {median: 80ms}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noMarkers := filepath.Join(dir, "README.md")
	if err := os.WriteFile(noMarkers, []byte("# no table here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no scenario", []string{"--rollouts", "3"}, "--scenario"},
		{"missing file", []string{"--scenario", filepath.Join(dir, "none.yaml")}, "none.yaml"},
		{"invalid field", []string{"--scenario", badField}, "rate.rps"},
		{"unknown output", []string{"--scenario", aaScenario, "-o", "yaml"}, "--output"},
		{"no rollouts", []string{"--scenario", aaScenario, "--rollouts", "0"}, "--rollouts"},
		{"unknown mode", []string{"--scenario", aaScenario, "--mode", "bayes"}, "--mode"},
		{"alpha out of range", []string{"--scenario", aaScenario, "--alpha", "1.5"}, "--alpha"},
		{"negative rps", []string{"--scenario", aaScenario, "--rps", "-5"}, "--rps"},
		{"readme without markers", []string{"--scenario", aaScenario, "--readme", noMarkers}, "markers"},
		{"not a number", []string{"--scenario", aaScenario, "--rollouts", "many"}, "rollouts"},
		{"from with a scenario", []string{"--from", badField, "--scenario", aaScenario}, "--from"},
		{"from a file that is no report", []string{"--from", badField}, "--from"},
		{"from a missing file", []string{"--from", filepath.Join(dir, "none.json")}, "none.json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, errs := runSimulate(t, tc.args...)
			if code != cmd.ExitUsage || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Fatalf("exit %d, stderr %q; want exit %d and one line naming %s", code, errs, cmd.ExitUsage, tc.want)
			}
		})
	}
}
