// Package sim simulates canary rollouts to measure decision quality: it generates realistic traffic
// (diurnal load, bursts, log-normal latencies with a Pareto tail, rare errors) for identical (A/A) and
// regressed (A/B) canaries and judges the very same traffic two ways: the Kayenta-compatible mode
// (per-interval series, Mann-Whitney judge, fail-fast, the rollout engine's default schedule) and the
// request-level sequential mode of package analysis/sequential. It reports, per scenario and mode, the
// false rollback or detection rate, the time to verdict and the canary requests served.
package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/canaryctl/canaryctl/analysis"
	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

// Scenario is one kind of canary.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Bad marks a regressed canary: its rollbacks are detections, not false rollbacks.
	Bad bool `json:"bad"`
	// ErrorAdd is added to the canary's 5xx probability; ErrorRate, when positive, replaces it.
	ErrorAdd  float64 `json:"errorAdd,omitempty"`
	ErrorRate float64 `json:"errorRate,omitempty"`
	// P99Factor multiplies the canary's P99 latency, leaving everything below the P90 alone: latencies
	// are stretched by a factor rising smoothly from 1 at the P90 to P99Factor at the P99 and above (a
	// monotone map, so the canary's P99 is exactly P99Factor times the baseline's).
	P99Factor float64 `json:"p99Factor,omitempty"`
	// MedianShiftMS is added to every canary latency.
	MedianShiftMS float64 `json:"medianShiftMs,omitempty"`
}

// DefaultScenarios are the scenarios of the acceptance targets.
func DefaultScenarios() []Scenario {
	return []Scenario{
		{Name: "A/A", Description: "canary identical to baseline"},
		{Name: "+1pp 5xx", Description: "canary 5xx rate 1 percentage point higher", Bad: true, ErrorAdd: 0.01},
		{Name: "10% 5xx", Description: "canary answers 10% of requests with 5xx", Bad: true, ErrorRate: 0.10},
		{Name: "+50% P99", Description: "canary P99 latency 50% higher, median unchanged", Bad: true, P99Factor: 1.5},
		{Name: "+20ms median", Description: "canary 20 ms slower on every request", Bad: true, MedianShiftMS: 20},
	}
}

// Schedule is the rollout: the judged steps and how each mode bakes them.
type Schedule struct {
	// Steps are the canary's shares in percent of the judged steps (baseline gets the same share);
	// after the last one the canary is promoted.
	Steps []float64 `json:"steps"`
	// Kayenta mode: each step lasts Duration; after Warmup a judgement every Interval (and one at the
	// end) over the series since the warm-up at Resolution; an interval score <= Marginal rolls back at
	// once (fail-fast), a final score >= Pass advances, in between the rollout pauses.
	Duration   time.Duration `json:"duration"`
	Interval   time.Duration `json:"interval"`
	Warmup     time.Duration `json:"warmup"`
	Resolution time.Duration `json:"resolution"`
	Pass       float64       `json:"pass"`
	Marginal   float64       `json:"marginal"`
	// Sequential mode: a look every 250 ms; Fail rolls back at once; Pass advances once the step has
	// baked MinBake. A step still undecided after Duration moves on if it is not the last one and the
	// data exclude a regression ExpandFactor times the minimum detectable effect
	// (sequential.Analyzer.SafeToExpand); otherwise it is extended, and at MaxBake the rollout pauses.
	MinBake      time.Duration `json:"minBake"`
	MaxBake      time.Duration `json:"maxBake"`
	ExpandFactor float64       `json:"expandFactor"`
}

// DefaultSchedule is the rollout engine's default schedule: its steps (sequential.DefaultStepWeights
// 2.5, 10, 100, every one judged, the 100% step as 50% canary against 50% baseline), 5 min steps judged
// every minute after a 30 s warm-up on 10 s points, pass 95, marginal 75, and the sequential mode's
// bake limits (rollout's tests check that it matches the engine's defaults).
func DefaultSchedule() Schedule {
	var steps []float64
	for _, w := range sequential.DefaultStepWeights() {
		steps = append(steps, sequential.JudgedShare(w))
	}
	return Schedule{Steps: steps, Duration: 5 * time.Minute, Interval: time.Minute,
		Warmup: 30 * time.Second, Resolution: 10 * time.Second, Pass: 95, Marginal: 75,
		MinBake: sequential.DefaultMinBake, MaxBake: sequential.DefaultMaxBake, ExpandFactor: sequential.DefaultExpandFactor}
}

func (s Schedule) validate() error {
	if len(s.Steps) == 0 {
		return errors.New("schedule steps: none; give at least one judged step, e.g. 2.5,10")
	}
	total := 0.0
	for i, w := range s.Steps {
		if !(w > 0 && w <= 50) {
			return fmt.Errorf("schedule steps[%d]: %v%% must be in (0, 50] (baseline gets the same share)", i, w)
		}
		total = max(total, w)
	}
	sec := func(d time.Duration) bool { return d > 0 && d%time.Second == 0 }
	switch {
	case !sec(s.Duration) || !sec(s.Interval) || !sec(s.Resolution) || s.Warmup < 0 || s.Warmup%time.Second != 0:
		return errors.New("schedule: duration, interval and resolution must be positive whole seconds, warmup whole seconds")
	case s.Warmup+s.Interval > s.Duration:
		return fmt.Errorf("schedule duration: %s is shorter than warmup %s plus interval %s", s.Duration, s.Warmup, s.Interval)
	case !sec(s.MinBake) || !sec(s.MaxBake) || s.MaxBake < s.MinBake:
		return errors.New("schedule: minBake and maxBake must be positive whole seconds with minBake <= maxBake")
	case !(s.ExpandFactor >= 1):
		return fmt.Errorf("schedule expandFactor: %v must be at least 1, e.g. 3", s.ExpandFactor)
	case !(s.Marginal >= 0 && s.Marginal <= s.Pass && s.Pass <= 100):
		return fmt.Errorf("schedule thresholds: want 0 <= marginal (%v) <= pass (%v) <= 100", s.Marginal, s.Pass)
	}
	return nil
}

// KayentaJudge scores one Kayenta judgement (0..100) of the P99-latency and 5xx-rate series of
// baseline and canary; rng supplies any randomness the judge needs (seeded per rollout).
type KayentaJudge func(p99, errRate providers.Pair, rng *rand.Rand) (float64, error)

// Config configures Run.
type Config struct {
	Rollouts   int                 `json:"rollouts"` // per scenario
	Seed       uint64              `json:"seed"`
	Workers    int                 `json:"-"` // 0: GOMAXPROCS
	Traffic    Traffic             `json:"traffic"`
	Schedule   Schedule            `json:"schedule"`
	Scenarios  []Scenario          `json:"scenarios"`
	Sequential sequential.Config   `json:"sequential"`
	Kayenta    KayentaJudge        `json:"-"` // nil: the Kayenta mode is skipped
	Progress   func(done, all int) `json:"-"`
}

// Mode names.
const (
	ModeKayenta    = "kayenta"
	ModeSequential = "sequential"
)

// Outcome is how a simulated rollout ended.
type Outcome int

// The outcomes.
const (
	Promoted Outcome = iota
	RolledBack
	Paused
)

type result struct {
	outcome Outcome
	seconds float64
	exposed int64 // canary requests served
}

// ModeStats summarises one mode on one scenario.
type ModeStats struct {
	Mode       string `json:"mode"`
	Rollouts   int    `json:"rollouts"`
	RolledBack int    `json:"rolledBack"`
	Promoted   int    `json:"promoted"`
	Paused     int    `json:"paused"`
	// RollbackRate is the share of rollouts rolled back: the false rollback rate for a good canary, the
	// detection rate for a bad one; RollbackLow and RollbackHigh its 95% Wilson interval.
	RollbackRate float64 `json:"rollbackRate"`
	RollbackLow  float64 `json:"rollbackLow"`
	RollbackHigh float64 `json:"rollbackHigh"`
	// MedianSeconds and P95Seconds: time to verdict (rollback, promotion or pause) over all rollouts.
	MedianSeconds float64 `json:"medianSeconds"`
	P95Seconds    float64 `json:"p95Seconds"`
	// MedianRollbackSeconds: median time to roll back over the rolled-back rollouts (0 if none).
	MedianRollbackSeconds float64 `json:"medianRollbackSeconds"`
	// MeanExposed and MedianExposed: canary requests served before the verdict.
	MeanExposed   float64 `json:"meanExposed"`
	MedianExposed float64 `json:"medianExposed"`
}

// ScenarioResult holds every mode's stats for one scenario.
type ScenarioResult struct {
	Scenario Scenario    `json:"scenario"`
	Modes    []ModeStats `json:"modes"`
}

// Report is the outcome of Run.
type Report struct {
	Config  Config           `json:"config"`
	Results []ScenarioResult `json:"results"`
	// CanaryP99MS and BaselineP99MS are the P99 latencies of the traffic model without bursts.
	BaselineP99MS    float64 `json:"baselineP99Ms"`
	BaselineMedianMS float64 `json:"baselineMedianMs"`
	Elapsed          string  `json:"elapsed"`
}

// Run simulates cfg.Rollouts rollouts per scenario, in parallel, deterministically for a seed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Rollouts <= 0 {
		return nil, fmt.Errorf("simulate: rollouts %d must be positive, e.g. 1000", cfg.Rollouts)
	}
	if err := cfg.Traffic.Validate(); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if err := cfg.Schedule.validate(); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if _, err := sequential.New(cfg.Sequential); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if len(cfg.Scenarios) == 0 {
		cfg.Scenarios = DefaultScenarios()
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	start := time.Now()
	q90, q99 := cfg.Traffic.LatencyQuantile(0.90), cfg.Traffic.LatencyQuantile(0.99)
	modes := []string{ModeSequential}
	if cfg.Kayenta != nil {
		modes = append([]string{ModeKayenta}, modes...)
	}
	ns := len(cfg.Scenarios)
	out := make([][][]result, ns) // scenario, mode, rollout
	for s := range out {
		out[s] = make([][]result, len(modes))
		for m := range modes {
			out[s][m] = make([]result, cfg.Rollouts)
		}
	}
	type job struct{ s, i int }
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done, all := 0, ns*cfg.Rollouts
	var firstErr error
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				res, err := simulate(cfg, cfg.Scenarios[j.s], canaryModel{sc: cfg.Scenarios[j.s], q90: q90, q99: q99},
					seedFor(cfg.Seed, cfg.Scenarios[j.s].Name, j.i))
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				for m := range modes {
					out[j.s][m][j.i] = res[m]
				}
				done++
				if cfg.Progress != nil {
					cfg.Progress(done, all)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for s := range ns {
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
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if firstErr != nil {
		return nil, fmt.Errorf("simulate: %w", firstErr)
	}
	rep := &Report{Config: cfg, BaselineP99MS: q99, BaselineMedianMS: cfg.Traffic.LatencyQuantile(0.5)}
	for s, sc := range cfg.Scenarios {
		sr := ScenarioResult{Scenario: sc}
		for m, name := range modes {
			sr.Modes = append(sr.Modes, summarize(name, out[s][m]))
		}
		rep.Results = append(rep.Results, sr)
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return rep, nil
}

func seedFor(seed uint64, scenario string, i int) [2]uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", seed, scenario)
	return [2]uint64{h.Sum64(), uint64(i)}
}

func summarize(mode string, rs []result) ModeStats {
	st := ModeStats{Mode: mode, Rollouts: len(rs)}
	var times, exposed, rbTimes []float64
	var sumExp float64
	for _, r := range rs {
		switch r.outcome {
		case RolledBack:
			st.RolledBack++
			rbTimes = append(rbTimes, r.seconds)
		case Promoted:
			st.Promoted++
		case Paused:
			st.Paused++
		}
		times = append(times, r.seconds)
		exposed = append(exposed, float64(r.exposed))
		sumExp += float64(r.exposed)
	}
	st.RollbackRate = float64(st.RolledBack) / float64(len(rs))
	st.RollbackLow, st.RollbackHigh = wilson(st.RolledBack, len(rs))
	st.MedianSeconds = analysis.Percentile(times, 50)
	st.P95Seconds = analysis.Percentile(times, 95)
	if len(rbTimes) > 0 {
		st.MedianRollbackSeconds = analysis.Percentile(rbTimes, 50)
	}
	st.MeanExposed = sumExp / float64(len(rs))
	st.MedianExposed = analysis.Percentile(exposed, 50)
	return st
}

// wilson is the 95% Wilson score interval of k successes in n trials.
func wilson(k, n int) (lo, hi float64) {
	const z = 1.959963984540054
	p, nf := float64(k)/float64(n), float64(n)
	c := (p + z*z/(2*nf)) / (1 + z*z/nf)
	h := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / (1 + z*z/nf)
	return max(0, c-h), min(1, c+h)
}

// canaryModel turns baseline traffic into the scenario's canary.
type canaryModel struct {
	sc       Scenario
	q90, q99 float64
}

func (m canaryModel) latency(base float64) float64 {
	l := base
	if f := m.sc.P99Factor; f > 0 && f != 1 {
		w := min(max((base-m.q90)/(m.q99-m.q90), 0), 1)
		l *= 1 + (f-1)*w
	}
	return l + m.sc.MedianShiftMS
}

func (m canaryModel) failed(e, pErr float64) bool {
	p := pErr + m.sc.ErrorAdd
	if m.sc.ErrorRate > 0 {
		p = m.sc.ErrorRate
	}
	return e < p
}

// routed is one second of traffic split between the cohorts at the split of the moment.
type routed struct {
	canary, baseline   []sequential.Sample
	stableN, stableErr int64
}

// route splits the whole second.
func route(sec second, share float64, m canaryModel, r *routed) {
	routePart(sec, share, m, r, 0, looksPerSecond)
}

// routePart splits the quarters [from, to) of the second.
func routePart(sec second, share float64, m canaryModel, r *routed, from, to int) {
	r.canary, r.baseline = r.canary[:0], r.baseline[:0]
	r.stableN, r.stableErr = 0, 0
	for q := from; q < to; q++ {
		r.stableN += sec.otherN[q]
		r.stableErr += sec.otherEr[q]
	}
	lo, hi := float64(from)/looksPerSecond, float64(to)/looksPerSecond
	for _, q := range sec.cand {
		if q.at < lo || q.at >= hi {
			continue
		}
		switch {
		case q.u < share:
			r.canary = append(r.canary, sequential.Sample{LatencyMS: m.latency(q.base) * sec.load, Failed: m.failed(q.e, sec.pErr)})
		case q.u < 2*share:
			r.baseline = append(r.baseline, sequential.Sample{LatencyMS: q.base * sec.load, Failed: q.e < sec.pErr})
		default:
			r.stableN++
			if q.e < sec.pErr {
				r.stableErr++
			}
		}
	}
}

// mode judges a rollout second by second.
type mode interface {
	// observe takes the next second of traffic and reports whether the rollout has ended.
	observe(sec second) bool
	result() result
}

// simulate runs one rollout of every mode on the same traffic.
func simulate(cfg Config, sc Scenario, m canaryModel, seed [2]uint64) ([]result, error) {
	src := rand.NewPCG(seed[0], seed[1])
	maxShare := 2 * slices.Max(cfg.Schedule.Steps) / 100
	st := newStream(cfg.Traffic, maxShare, src)
	var modes []mode
	if cfg.Kayenta != nil {
		modes = append(modes, newKayentaMode(cfg.Schedule, m, cfg.Kayenta, rand.New(rand.NewPCG(seed[0]^0x9e3779b97f4a7c15, seed[1]))))
	}
	sq, err := newSequentialMode(cfg.Schedule, m, cfg.Sequential)
	if err != nil {
		return nil, err
	}
	modes = append(modes, sq)
	ended := make([]bool, len(modes))
	left := len(modes)
	for left > 0 {
		sec := st.next()
		for i, md := range modes {
			if !ended[i] && md.observe(sec) {
				ended[i] = true
				left--
			}
		}
	}
	out := make([]result, len(modes))
	for i, md := range modes {
		out[i] = md.result()
		if k, ok := md.(*kayentaMode); ok && k.err != nil {
			return nil, k.err
		}
	}
	return out, nil
}

// sequentialMode is the request-level default: one sequential analyzer for the whole rollout, a look
// every quarter of a second.
type sequentialMode struct {
	sch      Schedule
	m        canaryModel
	a        *sequential.Analyzer
	step     int
	elapsed  int // looks into the step
	t        int // looks since the start
	r        routed
	res      result
	minBake  int // in looks
	maxBake  int
	duration int
}

func newSequentialMode(sch Schedule, m canaryModel, cfg sequential.Config) (*sequentialMode, error) {
	a, err := sequential.New(cfg)
	if err != nil {
		return nil, err
	}
	looks := func(d time.Duration) int { return int(d / time.Second * looksPerSecond) }
	return &sequentialMode{sch: sch, m: m, a: a, minBake: looks(sch.MinBake), maxBake: looks(sch.MaxBake),
		duration: looks(sch.Duration)}, nil
}

func (s *sequentialMode) observe(sec second) bool {
	for q := range looksPerSecond {
		if s.look(sec, q) {
			return true
		}
	}
	return false
}

// look judges one quarter of a second and reports whether the rollout has ended.
func (s *sequentialMode) look(sec second, q int) bool {
	routePart(sec, s.sch.Steps[s.step]/100, s.m, &s.r, q, q+1)
	s.res.exposed += int64(len(s.r.canary))
	v := s.a.Observe(sequential.Batch{Canary: s.r.canary, Baseline: s.r.baseline, StableRequests: s.r.stableN, StableErrors: s.r.stableErr})
	s.t++
	s.elapsed++
	switch {
	case v == sequential.Fail:
		s.res.outcome = RolledBack
	case v == sequential.Pass && s.elapsed >= s.minBake,
		v == sequential.NeedMoreData && s.step < len(s.sch.Steps)-1 && s.elapsed >= s.duration &&
			s.elapsed%int(sequential.ExpandCheckEvery/time.Second*looksPerSecond) == 0 && s.a.SafeToExpand(s.sch.ExpandFactor):
		s.step++
		s.elapsed = 0
		if s.step < len(s.sch.Steps) {
			return false
		}
		s.res.outcome = Promoted
	case s.elapsed >= s.maxBake:
		s.res.outcome = Paused
	default:
		return false
	}
	s.res.seconds = float64(s.t) / looksPerSecond
	return true
}

func (s *sequentialMode) result() result { return s.res }
