package cmd_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/cmd"
)

func runSimulate(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cmd.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: os.Getenv, Now: time.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	code = cmd.Run(t.Context(), env, append([]string{"simulate"}, args...))
	return code, out.String(), errb.String()
}

func TestSimulateCmd(t *testing.T) {
	t.Parallel()
	t.Run("markdown", func(t *testing.T) {
		t.Parallel()
		code, out, errs := runSimulate(t, "--rollouts", "4", "--seed", "3")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		for _, want := range []string{"| A/A | kayenta |", "| A/A | sequential |", "| 10% 5xx | sequential |", "4 simulated rollouts per scenario (seed 3)"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("json without kayenta", func(t *testing.T) {
		t.Parallel()
		code, out, errs := runSimulate(t, "--rollouts", "3", "-o", "json", "--no-kayenta", "--rps", "100")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var rep struct {
			Results []struct {
				Modes []struct {
					Mode     string
					Rollouts int
				}
			}
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		if len(rep.Results) != 5 || len(rep.Results[0].Modes) != 1 || rep.Results[0].Modes[0].Mode != "sequential" || rep.Results[0].Modes[0].Rollouts != 3 {
			t.Errorf("unexpected report %+v", rep)
		}
	})
}

func TestSimulateCmdUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown output", []string{"-o", "yaml"}, "--output"},
		{"no rollouts", []string{"--rollouts", "0"}, "--rollouts"},
		{"negative rps", []string{"--rps", "-5"}, "--rps"},
		{"alpha out of range", []string{"--alpha", "1.5"}, "alpha"},
		{"max bake too short", []string{"--max-bake", "10s"}, "--max-bake"},
		{"not a number", []string{"--rollouts", "many"}, "rollouts"},
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
