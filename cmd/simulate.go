package cmd

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/sim"
)

type simulateOptions struct {
	scenarios []string
	rollouts  int
	seed      uint64
	output    string
	workers   int
	readme    string
	results   string
	from      string
	cpuprof   string
	// overrides of every scenario
	mode  string
	alpha float64
	rps   float64
}

// run simulates the scenarios (or renders a saved report, --from) and writes the report.
func (o *simulateOptions) run(ctx context.Context, env *Env) error {
	if o.output != "markdown" && o.output != "json" {
		return usageErrorf("--output %q: valid values are markdown and json", o.output)
	}
	if o.from != "" {
		if len(o.scenarios) > 0 || o.results != "" || o.mode != "" || o.alpha != 0 || o.rps != 0 || o.cpuprof != "" {
			return usageErrorf("--from renders a saved report; leave out --scenario, --results, --mode, --alpha, --rps and --cpuprofile")
		}
		return o.render(env)
	}
	if err := o.check(); err != nil {
		return err
	}
	scs, err := sim.LoadScenarios(o.scenarios)
	if err != nil {
		return err
	}
	o.override(scs)
	// Read the README (and check its markers) before minutes of simulation, not after.
	readme, err := o.readReadme()
	if err != nil {
		return err
	}
	if env.Getenv("GOGC") == "" {
		// A simulation allocates small, short-lived objects by the million on a small heap:
		// collecting less often saves about a sixth of its CPU (measured: GOGC 100 → 1000, RSS 100 → 190 MB).
		debug.SetGCPercent(1000)
	}
	if o.cpuprof != "" {
		f, err := os.Create(o.cpuprof)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	next := 0.1
	progress := func(done, all int) {
		if f := float64(done) / float64(all); f >= next {
			next += 0.1
			env.Logger.Info("simulating", "done", done, "of", all, "elapsed", time.Since(start).Round(time.Second).String())
		}
	}
	rep, err := sim.Run(ctx, sim.Config{Scenarios: scs, Rollouts: o.rollouts, Seed: o.seed, Workers: o.workers, Progress: progress})
	if err != nil {
		return err
	}
	rep.CPUSeconds = cpuSeconds()
	env.Logger.Info("simulation done", "scenarios", len(scs), "rollouts", o.rollouts*len(scs), "elapsed", rep.Elapsed,
		"cpuSeconds", rep.CPUSeconds)
	if err := o.writeResults(rep); err != nil {
		return err
	}
	return o.write(env, rep, readme)
}

// check checks the flags of a simulation.
func (o *simulateOptions) check() error {
	if len(o.scenarios) == 0 {
		return usageErrorf("--scenario: give a scenario file or directory, e.g. --scenario testdata/scenarios/aa-ideal.yaml")
	}
	if o.rollouts <= 0 || o.rollouts > 1_000_000 {
		return usageErrorf("--rollouts %d: must be between 1 and 1000000, e.g. 1000", o.rollouts)
	}
	if o.workers < 0 {
		return usageErrorf("--workers %d: must be 0 (one per CPU) or more", o.workers)
	}
	if o.mode != "" && !slices.Contains(rollout.Modes, o.mode) {
		return usageErrorf("--mode %q: valid values are %v", o.mode, rollout.Modes)
	}
	if o.alpha != 0 && !(o.alpha > 0 && o.alpha < 1) {
		return usageErrorf("--alpha %v: must be between 0 and 1 (exclusive), e.g. 0.01", o.alpha)
	}
	if o.rps != 0 && !(o.rps > 0 && o.rps <= 1e6) {
		return usageErrorf("--rps %v: must be above 0 and at most 1000000, e.g. 200", o.rps)
	}
	return nil
}

// override applies --mode, --alpha and --rps to every scenario.
func (o *simulateOptions) override(scs []*sim.Scenario) {
	for _, sc := range scs {
		if o.mode != "" {
			sc.Policy.Mode = o.mode
		}
		if o.alpha != 0 {
			sc.Policy.Alpha = o.alpha
		}
		if o.rps != 0 {
			sc.Rate.RPS = o.rps
		}
	}
}

// writeResults writes the JSON report to --results, if given.
func (o *simulateOptions) writeResults(rep *sim.Report) error {
	if o.results != "" {
		var b bytes.Buffer
		if err := rep.WriteJSON(&b); err != nil {
			return err
		}
		if err := os.WriteFile(o.results, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write --results %s: %w", o.results, err)
		}
	}
	return nil
}

func newSimulateCmd(env *Env) *cobra.Command {
	o := simulateOptions{rollouts: 1000, seed: 1, output: "markdown"}
	c := &cobra.Command{
		Use:   "simulate --scenario FILE.yaml",
		Short: "Measure verdicts: run the real rollout engine on simulated production traffic (scenario files)",
		Long: `simulate runs the real rollout engine — its phases, step policy, sequential analyzers and Kayenta
judge, the built-in metrics source — against a simulated gateway and request log on a virtual clock,
many times per scenario, and reports how often a good canary is rolled back (false rollbacks, with a
95% exact interval), how often a bad one is caught, how long the verdicts take and how many rollouts
pause. A scenario file describes the traffic the way an SRE would (rate, latency, errors, cohorts and
their instances, sticky clients, shared events, drift), the canary's regression, the policy under test
and the targets; see rollout/sim/README.md. The library is testdata/scenarios; make sim runs it and
regenerates the README's decision table.`,
		Example: "  canaryctl simulate --scenario testdata/scenarios/aa-ideal.yaml --rollouts 1000 --seed 1\n" +
			"  canaryctl simulate --scenario testdata/scenarios --rollouts 200 -o json\n" +
			"  canaryctl simulate --scenario testdata/scenarios --readme README.md   # make sim",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	f := c.Flags()
	f.StringArrayVar(&o.scenarios, "scenario", nil, "scenario file, or directory of *.yaml scenario files (repeatable)")
	f.IntVar(&o.rollouts, "rollouts", o.rollouts, "simulated rollouts per scenario")
	f.Uint64Var(&o.seed, "seed", o.seed, "random seed (same seed, same results, whatever --workers)")
	f.StringVarP(&o.output, "output", "o", o.output, "output format: markdown or json")
	f.IntVar(&o.workers, "workers", 0, "rollouts run in parallel (0: one per CPU)")
	f.StringVar(&o.readme, "readme", "", "also rewrite the decision table between the simulation markers of this markdown file")
	f.StringVar(&o.results, "results", "", "also write the JSON report to this file (make sim: rollout/sim/results.json)")
	f.StringVar(&o.from, "from", "", "simulate nothing: print (and with --readme, write) the tables of a JSON report saved with --results")
	f.StringVar(&o.mode, "mode", "", "override every scenario's policy mode: sequential or kayenta")
	f.Float64Var(&o.alpha, "alpha", 0, "override every scenario's analysis.sequential.alpha")
	f.Float64Var(&o.rps, "rps", 0, "override every scenario's mean request rate")
	f.StringVar(&o.cpuprof, "cpuprofile", "", "write a CPU profile of the simulation to this file (go tool pprof)")
	return c
}

// readReadme reads --readme and checks it has the table markers (nil without --readme).
func (o *simulateOptions) readReadme() ([]byte, error) {
	if o.readme == "" {
		return nil, nil
	}
	doc, err := os.ReadFile(o.readme)
	if err != nil {
		return nil, usageErrorf("--readme: %v", err)
	}
	if _, err := sim.Table(doc); err != nil {
		return nil, usageErrorf("--readme %s: %v", o.readme, err)
	}
	return doc, nil
}

// render is simulate --from: the tables of a saved report.
func (o *simulateOptions) render(env *Env) error {
	readme, err := o.readReadme()
	if err != nil {
		return err
	}
	f, err := os.Open(o.from)
	if err != nil {
		return usageErrorf("--from: %v", err)
	}
	defer f.Close()
	rep, err := sim.ReadReport(f)
	if err != nil {
		return usageErrorf("--from %s: %v", o.from, err)
	}
	return o.write(env, rep, readme)
}

// write rewrites the README's table (with --readme) and prints the report.
func (o *simulateOptions) write(env *Env, rep *sim.Report, readme []byte) error {
	if o.readme != "" {
		doc, err := rep.ReplaceTable(readme)
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.readme, doc, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", o.readme, err)
		}
	}
	if o.output == "json" {
		return rep.WriteJSON(env.Stdout)
	}
	return rep.WriteMarkdown(env.Stdout)
}

// cpuSeconds is the CPU time (user + system) this process used so far; 0 when unknown.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return math.Round((tv(ru.Utime)+tv(ru.Stime))*1000) / 1000
}
