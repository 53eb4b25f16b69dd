// Package sim measures canaryctl's verdicts on simulated production traffic: it runs the real
// rollout engine (rollout.Engine, its phase handlers, step policy, analyzers and Kayenta judge, the
// built-in metrics source) against a simulated gateway, deployer and request log on a virtual clock,
// with traffic from a traffic.Model described by a scenario file, and reports how often a good canary
// is rolled back, how often a bad one is caught, and how long the verdicts take.
//
// Nothing of the engine is copied: a change to the step policy or the statistics changes what the
// simulator measures. The virtual clock makes a 15-minute rollout take milliseconds: the engine's Run
// loop waits through Clock.After, which moves virtual time forward at once.
package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/proxy"
	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/sim/traffic"
)

// Outcome is how one simulated rollout ended.
type Outcome string

// The outcomes.
const (
	Promoted   Outcome = "promoted"
	RolledBack Outcome = "rolled-back"
	Paused     Outcome = "paused"
	// Undecided: still running at the scenario's limit (stopped there).
	Undecided Outcome = "undecided"
	// Failed: the rollout ended in phase Failed (a rollback that could not be confirmed).
	Failed Outcome = "failed"
)

// Rollout is the result of one simulated rollout.
type Rollout struct {
	Outcome Outcome
	// Seconds from the start to the verdict (promotion, rollback or pause).
	Seconds float64
	// SinceOnset: seconds from the regression's onset (the first request of its step) to the verdict;
	// negative when the verdict came before the onset.
	SinceOnset float64
	// Step (0-based) at which the rollout ended.
	Step int
	// Metrics that failed (a rollback on a judgement) or the pause kind.
	Why []string
	// Canary requests served.
	Exposed int64
	// Reason is the engine's reason for the outcome (State.Reason).
	Reason string
}

// t0 is the virtual start of every simulated rollout.
var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// runOne runs one rollout of the scenario with the real engine.
func runOne(ctx context.Context, sc *Scenario, seed [2]uint64) (Rollout, error) {
	// Every rollout parses its own spec, as every canaryctl run does: engines running in parallel
	// share nothing.
	spec, err := sc.Spec()
	if err != nil {
		return Rollout{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clock := &virtualClock{now: t0, limit: t0.Add(sc.Limit), cancel: cancel}
	gw := newGateway(clock)
	gen := traffic.New(sc.Model, t0, gw, seed)
	log := newRequestLog(clock, gen)
	metrics, err := rollout.NewRequestMetrics(rollout.RequestMetricsConfig{Log: log, Series: proxy.Series, Control: spec.ControlCohort()})
	if err != nil {
		return Rollout{}, err
	}
	judge, err := rollout.NewKayentaJudge(rollout.KayentaJudgeConfig{Analysis: spec.Analysis,
		Noise: rand.New(rand.NewPCG(seed[0]^0x9e3779b97f4a7c15, seed[1]))})
	if err != nil {
		return Rollout{}, err
	}
	eng, err := rollout.New(rollout.Config{Spec: spec, Gateway: gw, Metrics: metrics, Requests: log,
		Deployer: &deployer{clock: clock, gen: gen}, Judge: judge, Store: newMemStore(simService), Clock: clock,
		Notifier: noNotifier{}, DetachOnPause: true, RunID: "sim",
		// No control request ever arrives, so ticks between the engine's own wake-ups (every look
		// in mode sequential, every interval in mode kayenta) would do nothing.
		PollInterval: time.Minute})
	if err != nil {
		return Rollout{}, err
	}
	gw.step = func() int { return eng.State().Step }
	if err := eng.Start(ctx); err != nil {
		return Rollout{}, err
	}
	defer eng.Close()
	out, err := eng.Run(ctx)
	if log.err != nil {
		return Rollout{}, log.err
	}
	if err != nil {
		return Rollout{}, fmt.Errorf("run simulated rollout: %w", err)
	}
	st := eng.State()
	r := Rollout{Step: st.Step, Exposed: gen.Counts(providers.Canary).Requests, Reason: oneLine(st.Reason)}
	end := clock.Now()
	switch {
	case out.Interrupted:
		r.Outcome = Undecided
	case out.Phase == rollout.Promoted:
		r.Outcome = Promoted
		end = st.FinishedAt
	case out.Phase == rollout.RolledBack:
		r.Outcome = RolledBack
		end = st.FinishedAt
		r.Why = failedMetrics(st)
	case out.Phase == rollout.Paused:
		r.Outcome = Paused
		if st.Pause != nil {
			end = st.Pause.Since
			r.Why = []string{st.Pause.Kind}
		}
	default:
		r.Outcome = Failed
		r.Why = []string{oneLine(st.Reason)}
	}
	r.Seconds = end.Sub(t0).Seconds()
	from := max(sc.Regression.FromStep-1, 0)
	if at, ok := gw.onset(from); ok {
		r.SinceOnset = end.Sub(at).Seconds()
	} else {
		r.SinceOnset = -1
	}
	return r, nil
}

// failedMetrics names the metrics that failed the last judgement, or the reason when none did.
func failedMetrics(st rollout.State) []string {
	for i := len(st.Intervals) - 1; i >= 0; i-- {
		iv := st.Intervals[i]
		if iv.Verdict != rollout.VerdictFail {
			continue
		}
		var out []string
		for _, m := range iv.Metrics {
			if m.Classification != "Pass" && m.Classification != "Undecided" {
				out = append(out, m.Name)
			}
		}
		for _, r := range iv.Routes { // analysis.routes: a route failed (the service may not have)
			if r.Verdict != rollout.VerdictFail {
				continue
			}
			for _, d := range r.Decisions {
				if d.Verdict == sequential.Fail && !slices.Contains(out, d.Metric) {
					out = append(out, "route "+d.Metric)
				}
			}
		}
		if len(out) > 0 {
			return out
		}
		break
	}
	return []string{"other: " + firstWords(st.Reason, 6)}
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}

type noNotifier struct{}

func (noNotifier) Notify(context.Context, rollout.Notification) error { return nil }

// Config configures Run.
type Config struct {
	Scenarios []*Scenario
	// Rollouts per scenario.
	Rollouts int
	Seed     uint64
	// Workers: rollouts run in parallel (default GOMAXPROCS).
	Workers int
	// Progress is called after each rollout; optional.
	Progress func(done, all int)
}

// Seed of rollout i of a scenario: the same seed gives the same traffic, whatever the worker count.
func seedFor(seed uint64, scenario string, i int) [2]uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", seed, scenario)
	return [2]uint64{h.Sum64(), uint64(i)}
}

// Run simulates cfg.Rollouts rollouts of every scenario, in parallel; the results do not depend on
// the number of workers.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Rollouts <= 0 {
		return nil, fmt.Errorf("simulate: rollouts %d must be positive, e.g. 1000", cfg.Rollouts)
	}
	if len(cfg.Scenarios) == 0 {
		return nil, errors.New("simulate: no scenario; give at least one scenario file")
	}
	specs := make([]*rollout.Spec, len(cfg.Scenarios))
	for i, sc := range cfg.Scenarios {
		s, err := sc.Spec()
		if err != nil {
			return nil, fmt.Errorf("simulate: scenario %s: %w", sc.Name, err)
		}
		specs[i] = s
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	start := time.Now()
	results := make([][]Rollout, len(cfg.Scenarios))
	for i := range results {
		results[i] = make([]Rollout, cfg.Rollouts)
	}
	type job struct{ s, i int }
	jobs := make(chan job)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		done     int
		wg       sync.WaitGroup
	)
	all := len(cfg.Scenarios) * cfg.Rollouts
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				sc := cfg.Scenarios[j.s]
				r, err := runOne(ctx, sc, seedFor(cfg.Seed, sc.Name, j.i))
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("simulate: scenario %s rollout %d: %w", sc.Name, j.i, err)
					cancel()
				}
				results[j.s][j.i] = r
				done++
				if cfg.Progress != nil {
					cfg.Progress(done, all)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for s := range cfg.Scenarios {
		for i := range cfg.Rollouts {
			select {
			case jobs <- job{s, i}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	rep := &Report{Rollouts: cfg.Rollouts, Seed: cfg.Seed}
	for i, sc := range cfg.Scenarios {
		rep.Results = append(rep.Results, summarize(sc, specs[i], results[i]))
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return rep, nil
}

// sortedCopy returns the values sorted.
func sortedCopy(v []float64) []float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s
}
