package cmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/judge/sim"
)

type simulateOptions struct {
	rollouts int
	seed     uint64
	output   string
	rps      float64
	alpha    float64
	workers  int
	maxBake  time.Duration
	noKay    bool
}

func newSimulateCmd(env *Env) *cobra.Command {
	o := simulateOptions{rollouts: 1000, seed: 1, output: "markdown", rps: 200, alpha: sequential.DefaultConfig().Alpha,
		maxBake: sim.DefaultSchedule().MaxBake}
	c := &cobra.Command{
		Use:   "simulate",
		Short: "Measure decision quality: simulated A/A and A/B rollouts judged by the Kayenta mode and the sequential default",
		Long: `simulate generates realistic traffic (diurnal load, bursts, log-normal latencies with a Pareto tail,
rare errors) for an identical canary (A/A) and regressed ones (+1 pp 5xx, 10% 5xx, +50% P99, +20 ms
median), judges the same traffic with the Kayenta-compatible mode (per-interval series, Mann-Whitney,
fail-fast, the engine's default schedule) and with the request-level sequential tests, and prints per
scenario the false rollback or detection rate, time to verdict and canary requests served.`,
		Example: "  canaryctl simulate --rollouts 1000 --seed 1 -o markdown\n  canaryctl simulate --rollouts 200 --rps 50 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.output != "markdown" && o.output != "json" {
				return usageErrorf("--output %q: valid values are markdown and json", o.output)
			}
			if o.rollouts <= 0 || o.rollouts > 1_000_000 {
				return usageErrorf("--rollouts %d: must be between 1 and 1000000, e.g. 1000", o.rollouts)
			}
			if !(o.rps > 0 && o.rps <= 100_000) {
				return usageErrorf("--rps %v: must be above 0 and at most 100000, e.g. 200", o.rps)
			}
			if o.workers < 0 {
				return usageErrorf("--workers %d: must be 0 (all CPUs) or more", o.workers)
			}
			scfg := sequential.DefaultConfig()
			scfg.Alpha = o.alpha
			if err := scfg.Validate(); err != nil {
				return &usageError{err: fmt.Errorf("--alpha: %w", err)}
			}
			sch := sim.DefaultSchedule()
			sch.MaxBake = o.maxBake
			if o.maxBake < sch.MinBake || o.maxBake%time.Second != 0 {
				return usageErrorf("--max-bake %s: must be whole seconds and at least %s", o.maxBake, sch.MinBake)
			}
			tr := sim.DefaultTraffic()
			tr.RPS = o.rps
			cfg := sim.Config{Rollouts: o.rollouts, Seed: o.seed, Workers: o.workers, Traffic: tr, Schedule: sch,
				Scenarios: sim.DefaultScenarios(), Sequential: scfg}
			if !o.noKay {
				k, err := sim.NewKayentaJudge(sch)
				if err != nil {
					return fmt.Errorf("simulate: %w", err)
				}
				cfg.Kayenta = k
			}
			rep, err := sim.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			env.Logger.Info("simulation done", "rollouts", o.rollouts*len(cfg.Scenarios), "elapsed", rep.Elapsed)
			if o.output == "json" {
				return rep.WriteJSON(env.Stdout)
			}
			return rep.WriteMarkdown(env.Stdout)
		},
	}
	f := c.Flags()
	f.IntVar(&o.rollouts, "rollouts", o.rollouts, "simulated rollouts per scenario")
	f.Uint64Var(&o.seed, "seed", o.seed, "random seed (same seed, same results)")
	f.StringVarP(&o.output, "output", "o", o.output, "output format: markdown or json")
	f.Float64Var(&o.rps, "rps", o.rps, "mean requests per second of the simulated service")
	f.Float64Var(&o.alpha, "alpha", o.alpha, "sequential mode: false rollback probability over the whole rollout")
	f.DurationVar(&o.maxBake, "max-bake", o.maxBake, "sequential mode: longest a step is extended before the rollout pauses")
	f.IntVar(&o.workers, "workers", 0, "goroutines (0: one per CPU)")
	f.BoolVar(&o.noKay, "no-kayenta", false, "skip the Kayenta-compatible mode")
	return c
}
