package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

type validateOptions struct {
	specFile string
}

func newValidateCmd(env *Env) *cobra.Command {
	o := &validateOptions{}
	c := &cobra.Command{
		Use:   "validate --spec FILE",
		Short: "Check a rollout spec without running it: every problem at once, one per line",
		Long: `validate reads a rollout spec and reports every problem at once, one per line, as
  path (line N): what is wrong; how to fix it
(unknown fields with the closest known name, values of the wrong kind, and every rule of the spec), then
prints the plan it would run: the steps with their splits and times. Nothing is deployed and no gateway
or metrics source is contacted. run --dry-run does the same; run reports the same problems.

Exit codes: 0 valid, 2 invalid spec or unreadable file.`,
		Example: `  canaryctl validate --spec rollout.yaml
  canaryctl run --spec rollout.yaml --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.specFile == "" {
				return usageErrorf("--spec FILE is required")
			}
			ro := &runOptions{specFile: o.specFile}
			raw, err := readSpecSource(env, ro, "")
			if err != nil {
				return err
			}
			spec, err := rollout.ParseSpec(bytes.NewReader(raw))
			if err != nil {
				return specProblems(specName(ro), err)
			}
			printPlan(env.Stdout, specName(ro), spec)
			return nil
		},
	}
	c.Flags().StringVarP(&o.specFile, "spec", "f", "", "rollout spec (YAML); - reads stdin")
	_ = c.MarkFlagFilename("spec", "yaml", "yml")
	return c
}

// specName names the spec's source in messages.
func specName(o *runOptions) string {
	switch o.specFile {
	case "":
		return "the saved spec of " + o.service
	case "-":
		return "the spec on stdin"
	}
	return o.specFile
}

// specError is an invalid spec: every problem on its own line under a header naming the file.
type specError struct {
	file string
	err  error // rollout.SpecErrors or one *rollout.SpecError
}

func specProblems(file string, err error) error { return &specError{file: file, err: err} }

func (e *specError) Error() string { return strings.Join(e.lines(), "\n") }
func (e *specError) Unwrap() error { return e.err }

// lines is a header and one line per problem.
func (e *specError) lines() []string {
	var errs rollout.SpecErrors
	if !errors.As(e.err, &errs) {
		return []string{fmt.Sprintf("%s is not a valid spec: %s", e.file, oneLine(e.err.Error()))}
	}
	out := []string{fmt.Sprintf("%s is not a valid spec (%s, one per line):", e.file, plural(len(errs), "problem"))}
	for _, x := range errs {
		out = append(out, oneLine(x.Error()))
	}
	return out
}

// notStarted marks an error before any traffic moved that is not the user's input (a deployment,
// the gateway, the metrics source or the state directory failed): exit 5, not 1.
func notStarted(err error) error {
	var inv invalidInput
	if err == nil || errors.As(err, &inv) && inv.InvalidInput() || errors.Is(err, context.Canceled) {
		return err
	}
	return &notStartedError{err: err}
}

// printPlan writes what a valid spec will do: its sources and every step with its split and times.
func printPlan(w io.Writer, file string, s *rollout.Spec) {
	fmt.Fprintf(w, "%s is valid: service %s, gateway %s, metrics %s, analysis %s, control %s\n",
		file, s.Service, s.Gateway.Type, s.Metrics.Type, s.Analysis.Mode, s.Analysis.Control)
	var total time.Duration
	for i, st := range s.Steps {
		sp := s.SplitFor(i)
		line := fmt.Sprintf("  step %d/%d: %s (stable %s", i+1, len(s.Steps), providers.Percent(sp.Canary)+" canary", providers.Percent(sp.Stable()))
		if s.HasBaseline() {
			line += ", baseline " + providers.Percent(sp.Baseline)
		}
		line += fmt.Sprintf("), warm-up %s, judged every %s, %s in all", fmtDur(st.Warmup), fmtDur(judgeEvery(s, st)), fmtDur(st.Duration))
		if st.Approval {
			line += ", waits for approval (canaryctl promote)"
		}
		fmt.Fprintln(w, line)
		total += st.Duration
	}
	fmt.Fprintf(w, "  at least %s from the first step to promotion", fmtDur(total))
	if s.Analysis.Mode == rollout.ModeSequential {
		fmt.Fprintf(w, " (a step still undecided is extended up to %s)", fmtDur(s.Analysis.Sequential.MaxBake))
	}
	fmt.Fprintln(w)
}

func judgeEvery(s *rollout.Spec, st rollout.StepSpec) time.Duration {
	if s.Analysis.Mode == rollout.ModeSequential {
		return s.Analysis.Sequential.LookInterval
	}
	return st.Interval
}

// fmtDur writes a duration as a spec would: 1m, 1m30s, 250ms (not 1m0s).
func fmtDur(d time.Duration) string { return rollout.FormatDuration(d) }

// plural writes "1 problem", "3 problems".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
