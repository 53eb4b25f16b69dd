package rollout

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
)

// synthLog is a request log that generates traffic as the fake clock advances: rps requests per
// second, routed by the fake gateway's split of the moment, log-normal latencies (median 80 ms),
// 0.5% background 5xx, and a canary that may fail more often or be slower. Seeded: deterministic.
type synthLog struct {
	mu          sync.Mutex
	gw          *fake.Gateway
	rng         *rand.Rand
	rps         float64
	canaryErr   float64 // the canary's 5xx probability (baseline and stable: 0.005)
	canaryShift time.Duration
	upTo        time.Time
	reqs        []providers.Request
	failNext    int // the next calls fail
	calls       int
}

func newSynthLog(gw *fake.Gateway, rps, canaryErr float64, seed uint64) *synthLog {
	return &synthLog{gw: gw, rng: rand.New(rand.NewPCG(seed, 7)), rps: rps, canaryErr: canaryErr}
}

func (l *synthLog) Requests(ctx context.Context, since, until time.Time) ([]providers.Request, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.failNext > 0 {
		l.failNext--
		return nil, errors.New("request log unavailable")
	}
	split, err := l.gw.Split(ctx)
	if err != nil {
		return nil, err
	}
	if l.upTo.IsZero() || l.upTo.Before(since) {
		l.upTo = since
	}
	gap := time.Duration(float64(time.Second) / l.rps)
	for t := l.upTo.Add(gap); t.Before(until); t = t.Add(gap) {
		u := l.rng.IntN(providers.BasisPoints)
		r := providers.Request{Time: t, Cohort: providers.Stable, Status: 200,
			Latency: time.Duration(80 * math.Exp(0.45*l.rng.NormFloat64()) * float64(time.Millisecond))}
		pErr := 0.005
		switch {
		case u < split.Canary:
			r.Cohort, pErr = providers.Canary, l.canaryErr
			r.Latency += l.canaryShift
		case u < split.Canary+split.Baseline:
			r.Cohort = providers.Baseline
		}
		if l.rng.Float64() < pErr {
			r.Status = 500
		}
		l.reqs = append(l.reqs, r)
		l.upTo = t
	}
	var out []providers.Request
	for _, r := range l.reqs {
		if !r.Time.Before(since) && r.Time.Before(until) {
			out = append(out, r)
		}
	}
	// keep memory bounded: nothing before since is asked for again
	l.reqs = slices.DeleteFunc(l.reqs, func(r providers.Request) bool { return r.Time.Before(since) })
	return out, nil
}

// seqSpec is testSpec (three steps of 3 minutes, interval 1m) in the default mode for builtin metrics.
func seqSpec() *Spec {
	s := testSpec()
	s.Analysis.Mode = ""
	s.SetDefaults()
	return s
}

// run ticks until the rollout reaches want or ends, at most n ticks.
func (h *harness) runUntil(n int, want func(State) bool) State {
	h.t.Helper()
	for range n {
		st := h.eng.State()
		if want(st) || st.Phase.Terminal() {
			return st
		}
		h.tick(h.t.Context())
	}
	h.t.Fatalf("condition not reached after %d ticks; phase %s step %d: %s", n, h.eng.State().Phase, h.eng.State().Step, h.eng.State().Reason)
	return State{}
}

func terminal(st State) bool { return st.Phase.Terminal() }

func TestSequentialIsTheDefaultForPerRequestSources(t *testing.T) {
	t.Parallel()
	if m := seqSpec().Analysis.Mode; m != ModeSequential {
		t.Errorf("builtin metrics: mode %q, want sequential", m)
	}
	s := testSpec()
	s.Analysis.Mode = ""
	s.Metrics = MetricsSpec{Type: "prometheus"}
	s.SetDefaults()
	if s.Analysis.Mode != ModeKayenta {
		t.Errorf("prometheus: mode %q, want kayenta", s.Analysis.Mode)
	}
	q, d := seqSpec().Analysis.Sequential, sequential.DefaultConfig()
	if q.Alpha != d.Alpha || q.Beta != d.Beta || q.ErrorMargin != 100*d.ErrorMargin || q.MedianMargin != 100*d.MedianMargin ||
		q.TailMargin != 100*d.TailMargin || q.TailQuantile != d.TailQuantile || q.GuardRatio != d.GuardRatio ||
		q.LookInterval != sequential.DefaultLookInterval || q.MinBake != sequential.DefaultMinBake ||
		q.MaxBake != sequential.DefaultMaxBake || q.ExpandFactor != sequential.DefaultExpandFactor || q.ThresholdSamples != d.MinThresholdSamples {
		t.Errorf("defaults differ from the simulator's: %+v", q)
	}
	a, err := sequential.New(q.analyzerConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Config(); got != d {
		t.Errorf("analyzer config %+v, want the analyzer's defaults %+v", got, d)
	}
}

func TestNewNeedsARequestLogInSequentialMode(t *testing.T) {
	t.Parallel()
	store, err := OpenStore(StoreConfig{Root: t.TempDir(), Service: "checkout"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Spec: seqSpec(), Gateway: fake.NewGateway(), Metrics: fake.NewMetrics(), Deployer: fake.NewDeployer(),
		Judge: JudgeFunc(ratioJudge), Store: store})
	if !errors.Is(err, errNoRequestLog) {
		t.Fatalf("New without Requests: %v, want errNoRequestLog", err)
	}
}

func TestSequentialGoodCanaryPassesEveryStep(t *testing.T) {
	t.Parallel()
	spec := seqSpec()
	gw := fake.NewGateway()
	log := newSynthLog(gw, 4000, 0.005, 1)
	h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
	st := h.runUntil(20000, terminal)
	if st.Phase != Promoted {
		t.Fatalf("phase %s: %s", st.Phase, st.Reason)
	}
	want := []string{"Pending>Deploying", "Deploying>Progressing", "Progressing>Analyzing", "Analyzing>Progressing",
		"Progressing>Analyzing", "Analyzing>Progressing", "Progressing>Analyzing", "Analyzing>Promoting", "Promoting>Promoted"}
	if got := h.transitions(); !slices.Equal(got, want) {
		t.Errorf("transitions %v, want %v", got, want)
	}
	for step := range 3 {
		var last *Interval
		for i := range st.Intervals {
			if st.Intervals[i].Step == step {
				last = &st.Intervals[i]
			}
		}
		if last == nil || last.Verdict != VerdictPass || !last.Final || last.Sequential == nil || last.Sequential.Verdict != sequential.Pass {
			t.Fatalf("step %d: last interval %+v, want a final pass with its explanation", step, last)
		}
		// a pass advances only after minBake (1m; the steps last 3m)
		if baked := last.At.Sub(last.Start); baked < time.Minute {
			t.Errorf("step %d passed after %s, before minBake 1m", step, baked)
		}
		if len(last.Metrics) != 5 || last.Canary == 0 || last.Baseline == 0 || !strings.Contains(last.Reason, "pass: the canary is within every margin") {
			t.Errorf("step %d: explanation %q, metrics %+v, requests %d/%d", step, last.Reason, last.Metrics, last.Canary, last.Baseline)
		}
		for _, m := range last.Metrics {
			if m.Reason == "" || m.CanaryCount == 0 {
				t.Errorf("step %d metric %s: no sentence or sample size: %+v", step, m.Name, m)
			}
		}
	}
	if out := h.progress.String(); !strings.Contains(out, "| pass | pass: the canary is within every margin") {
		t.Errorf("progress lines lack the sentence:\n%s", out)
	}
}

func TestSequentialBadCanaryRollsBackWithinSeconds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		canaryErr float64
		shift     time.Duration
		metric    string
		within    time.Duration
	}{
		// Evidence grows by at most 0.75 nats per 5 s block (so that one instance's 10-20 s bad moment
		// cannot roll back a good canary): a paired test needs at least ~42 s to reach its
		// threshold of log(1/0.002) = 6.2 nats, whatever the effect; the guard, with two
		// alternatives, a little less.
		{name: "10% 5xx", canaryErr: 0.10, metric: "5xx", within: 2 * time.Minute},
		{name: "+40ms on every request", canaryErr: 0.005, shift: 40 * time.Millisecond, metric: "latency", within: 90 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := seqSpec()
			gw := fake.NewGateway()
			log := newSynthLog(gw, 200, tc.canaryErr, 2)
			log.canaryShift = tc.shift
			h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
			st := h.runUntil(5000, terminal)
			if st.Phase != RolledBack {
				t.Fatalf("phase %s: %s", st.Phase, st.Reason)
			}
			last := st.Intervals[len(st.Intervals)-1]
			if last.Verdict != VerdictFail || !last.Final || last.Step != 0 || last.Sequential == nil {
				t.Fatalf("last interval %+v, want the failing look of step 1", last)
			}
			if took := last.At.Sub(last.Start); took > tc.within {
				t.Errorf("rolled back %s after the split was set, want within %s", took, tc.within)
			}
			if !strings.Contains(st.Reason, "fail: the canary is worse on "+tc.metric) || !strings.Contains(st.Reason, "lower bound") {
				t.Errorf("reason %q does not say what failed and why", st.Reason)
			}
			if sp, _ := gw.Split(t.Context()); sp != (providers.Split{}) || st.Split != (providers.Split{}) {
				t.Errorf("split after rollback: gateway %v, state %v; want all on stable", sp, st.Split)
			}
			if !strings.Contains(h.progress.String(), "| fail |") {
				t.Errorf("no progress line for the failing look:\n%s", h.progress.String())
			}
			// the JSON report and JUnit carry the explanation
			rep := NewReport(spec, st)
			var js, ju strings.Builder
			if err := rep.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{`"sequential": {`, `"verdict": "fail"`, `"compared": "`, `"lowerLevel": `, `"tolerance": `, `"eValue": `, `"outcome": "failed"`} {
				if !strings.Contains(js.String(), want) {
					t.Errorf("JSON report lacks %s", want)
				}
			}
			if err := rep.WriteJUnit(&ju); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(ju.String(), `<failure message="fail: the canary is worse on `+tc.metric) || strings.Contains(ju.String(), "score n/a") {
				t.Errorf("JUnit does not explain the failing look:\n%s", ju.String())
			}
			// Spinnaker: the mode is said, and a look has no score — none is sent rather than null
			if line := rep.SpinnakerLine(); !strings.Contains(line, `"mode":"sequential"`) || strings.Contains(line, `"score"`) {
				t.Errorf("Spinnaker line %s: want mode sequential and no score", line)
			}
		})
	}
}

// TestSequentialLowTrafficSaysWhatItWaitsFor: a step that cannot settle at the traffic it gets is
// extended at its duration with the requests it needs and how long they take at the current rate,
// then pauses at maxBake saying the same (the engine used to extend it silently). A step that is not
// the last is never paused before maxBake: it may still move on (SafeToExpand).
func TestSequentialLowTrafficSaysWhatItWaitsFor(t *testing.T) {
	t.Parallel()
	spec := seqSpec()
	spec.Analysis.Sequential.MaxBake = 6 * time.Minute
	gw := fake.NewGateway()
	// 20 requests/s: the canary gets 0.5/s at 2.5%, far too little to decide in 6 minutes
	log := newSynthLog(gw, 20, 0.005, 3)
	h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
	st := h.runUntil(5000, func(st State) bool { return st.Phase == Paused })
	if st.Phase != Paused || st.Pause == nil || st.Pause.Kind != PauseNeedMoreData || st.Step != 0 {
		t.Fatalf("phase %s step %d pause %+v: %s; want a need-more-data pause in step 1", st.Phase, st.Step, st.Pause, st.Reason)
	}
	for _, want := range []string{"still undecided at maxBake 6m0s", "not enough traffic yet: about ", " more requests per cohort ≈ ",
		"at the current ", "request pairs/s", "canaryctl promote"} {
		if !strings.Contains(st.Reason, want) {
			t.Errorf("pause reason %q should contain %q", st.Reason, want)
		}
	}
	var paused *Interval
	extended := false
	for i := range st.Intervals {
		iv := &st.Intervals[i]
		if iv.Verdict == VerdictFail || iv.Verdict == VerdictPass {
			t.Fatalf("interval %d decided %s on too little data: %s", i, iv.Verdict, iv.Reason)
		}
		if iv.At.Sub(iv.Start) == 3*time.Minute && strings.Contains(iv.Reason, "step extended beyond its 3m") &&
			strings.Contains(iv.Reason, "not enough traffic yet: about ") {
			extended = true
		}
		paused = iv
	}
	if !extended {
		t.Errorf("no record at the step's 3m duration says it is extended and what it waits for: %+v", st.Intervals)
	}
	if !paused.Final || paused.Verdict != VerdictNeedMoreData || paused.At.Sub(paused.Start) != 6*time.Minute {
		t.Errorf("last interval %+v, want the final need-more-data look at maxBake 6m", paused)
	}
	if paused.Sequential.MoreRequests <= 0 {
		t.Errorf("the pause does not state the requests still needed: %+v", paused.Sequential)
	}
	if sp, _ := gw.Split(t.Context()); sp != spec.SplitFor(0) {
		t.Errorf("paused split %v, want step 1's %v held", sp, spec.SplitFor(0))
	}
	var ju strings.Builder
	if err := NewReport(spec, st).WriteJUnit(&ju); err != nil {
		t.Fatal(err)
	}
	if strings.Count(ju.String(), `type="need-more-data"`) != 1 {
		t.Errorf("JUnit should report the paused step as one need-more-data failure:\n%s", ju.String())
	}
	// promote accepts the undecided step; the next step starts
	h.post(ActionPromote)
	h.tick(t.Context())
	if st := h.eng.State(); st.Phase != Progressing || st.Step != 1 {
		t.Fatalf("after promote: phase %s step %d: %s", st.Phase, st.Step, st.Reason)
	}
	h.post(ActionAbort)
	if p := h.runUntil(100, terminal).Phase; p != RolledBack {
		t.Errorf("after abort: %s", p)
	}
}

func TestSequentialUndecidedStepMovesOnWhenSafe(t *testing.T) {
	t.Parallel()
	spec := seqSpec()
	spec.Analysis.Sequential.ExpandFactor = 1000 // every margin times 1000 is excluded at once
	spec.Analysis.Sequential.MaxBake = 4 * time.Minute
	gw := fake.NewGateway()
	// 4 requests/s: at most 2 per second per cohort even in the last step (50/50)
	log := newSynthLog(gw, 4, 0.005, 4)
	h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
	st := h.runUntil(5000, func(st State) bool { return st.Step == 1 })
	if st.Phase.Terminal() {
		t.Fatalf("ended %s: %s", st.Phase, st.Reason)
	}
	first := st.Intervals[len(st.Intervals)-1]
	if first.Step != 0 || first.Verdict != VerdictNeedMoreData || !first.Final || first.At.Sub(first.Start) != 3*time.Minute ||
		!strings.Contains(first.Reason, "exclude 1000 times every margin") {
		t.Errorf("step 1 ended with %+v; want an undecided final look at its 3m duration that moves on", first)
	}
	// the last step never moves on undecided: it pauses at maxBake
	st = h.runUntil(20000, func(st State) bool { return st.Phase == Paused })
	if st.Step != 2 || st.Pause == nil || st.Pause.Kind != PauseNeedMoreData {
		t.Errorf("phase %s step %d pause %+v: %s; want the last step paused for more data", st.Phase, st.Step, st.Pause, st.Reason)
	}
}

func TestSequentialLookErrors(t *testing.T) {
	t.Parallel()
	t.Run("retried without losing requests", func(t *testing.T) {
		t.Parallel()
		gw := fake.NewGateway()
		log := newSynthLog(gw, 200, 0.005, 5)
		h := newHarness(t, seqSpec(), func(c *Config) { c.Requests = log; c.Gateway = gw })
		h.runUntil(100, func(st State) bool { return st.Phase == Analyzing })
		log.mu.Lock()
		log.failNext = 3
		log.mu.Unlock()
		st := h.runUntil(200, func(st State) bool { return len(st.Intervals) >= 3 && st.ConsecutiveErrors == 0 && log.calls > 5 })
		if st.Phase != Analyzing {
			t.Fatalf("phase %s after 3 failed reads (limit 4): %s", st.Phase, st.Reason)
		}
		errs := 0
		for _, iv := range st.Intervals {
			if iv.Verdict == VerdictError && strings.Contains(iv.Error, "request log unavailable") {
				errs++
			}
		}
		if errs != 3 {
			t.Errorf("%d error intervals, want 3", errs)
		}
	})
	t.Run("roll back at the limit", func(t *testing.T) {
		t.Parallel()
		gw := fake.NewGateway()
		log := newSynthLog(gw, 200, 0.005, 6)
		h := newHarness(t, seqSpec(), func(c *Config) { c.Requests = log; c.Gateway = gw })
		h.runUntil(100, func(st State) bool { return st.Phase == Analyzing })
		log.mu.Lock()
		log.failNext = 100
		log.mu.Unlock()
		st := h.runUntil(100, terminal)
		if st.Phase != RolledBack || !strings.Contains(st.Reason, "4 consecutive errors (limit 4)") {
			t.Errorf("phase %s: %s", st.Phase, st.Reason)
		}
	})
}

// stickyKong is a Kong gateway in hash mode (sticky cohorts) with per-request logs.
const stickyKong = "gateway: {type: kong, kong: {admin: \"http://127.0.0.1:8001\", upstream: checkout, mode: hash, hashOn: consumer}}\nmetrics: {type: kong-log}\n"

func TestSequentialSpecValidation(t *testing.T) {
	t.Parallel()
	const prom = "metrics: {type: prometheus, prometheus: {url: \"http://127.0.0.1:9090\"}}\n"
	for _, tc := range []struct {
		name, edit, field, fix string
	}{
		{"unknown mode", "analysis: {mode: bayes}\n", "analysis.mode", "use sequential or kayenta"},
		{"sequential with prometheus", prom + "analysis: {mode: sequential}\n", "analysis.mode", "use mode kayenta or a per-request metrics source"},
		{"alpha", "analysis: {sequential: {alpha: 1.5}}\n", "analysis.sequential.alpha", "between 0 and 1"},
		{"beta", "analysis: {sequential: {beta: -0.1}}\n", "analysis.sequential.beta", "between 0 and 1"},
		{"error margin", "analysis: {sequential: {errorMargin: 150}}\n", "analysis.sequential.errorMargin", "percentage points"},
		{"median margin", "analysis: {sequential: {medianMargin: 60}}\n", "analysis.sequential.medianMargin", "between 0 and 50"},
		{"tail margin above 1-q", "analysis: {sequential: {tailQuantile: 0.99, tailMargin: 2}}\n", "analysis.sequential.tailMargin", "between 0 and 1 (exclusive)"},
		{"tail quantile", "analysis: {sequential: {tailQuantile: 99}}\n", "analysis.sequential.tailQuantile", "e.g. 0.99"},
		{"guard ratio", "analysis: {sequential: {guardRatio: 0.5}}\n", "analysis.sequential.guardRatio", "between 1 and 1024"},
		{"expand factor", "analysis: {sequential: {expandFactor: 0.5}}\n", "analysis.sequential.expandFactor", "at least 1"},
		{"threshold samples", "analysis: {sequential: {thresholdSamples: 5}}\n", "analysis.sequential.thresholdSamples", "at least 10"},
		{"look interval", "analysis: {sequential: {lookInterval: 1ms}}\n", "analysis.sequential.lookInterval", "10ms..1m"},
		{"min bake", "analysis: {sequential: {minBake: -1s}}\n", "analysis.sequential.minBake", "negative"},
		{"max bake below min bake", "analysis: {sequential: {minBake: 2m, maxBake: 1m}}\n", "analysis.sequential.maxBake", "shorter than minBake"},
		{"max bake below a step", "analysis: {sequential: {maxBake: 4m}}\n", "analysis.sequential.maxBake", "shorter than steps[0].duration (5m)"},
		{"unknown field", "analysis: {sequential: {alfa: 0.1}}\n", "analysis.sequential.alfa", "did you mean alpha?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gw := gatewayLine
			if strings.Contains(tc.edit, "gateway:") {
				gw = ""
			}
			_, err := ParseSpec(strings.NewReader(minimalSpec + gw + tc.edit))
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("want a *SpecError, got %v", err)
			}
			found := false
			for _, line := range strings.Split(err.Error(), "\n") {
				found = found || namesField(line, tc.field) && strings.Contains(line, tc.fix)
			}
			if !found {
				t.Errorf("no line %q with %q in:\n%v", tc.field+": ...", tc.fix, err)
			}
		})
	}
	for _, tc := range []struct{ name, edit, mode string }{
		{"builtin defaults to sequential", "", ModeSequential},
		{"prometheus defaults to kayenta", prom, ModeKayenta},
		{"kayenta on request data", "analysis: {mode: kayenta}\n", ModeKayenta},
		{"settings", "analysis: {sequential: {alpha: 0.05, errorMargin: 2, lookInterval: 1s, maxBake: 30m}}\n", ModeSequential},
		// sticky cohorts are judged by client (analysis/sequential, clusters.go)
		{"sticky cohorts default to sequential", stickyKong, ModeSequential},
		{"sticky cohorts sequential", "analysis: {mode: sequential}\n" + stickyKong, ModeSequential},
		{"kong targets default to sequential", strings.ReplaceAll(stickyKong, "mode: hash, hashOn: consumer", "mode: targets"), ModeSequential},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gw := gatewayLine
			if strings.Contains(tc.edit, "gateway:") {
				gw = ""
			}
			s, err := ParseSpec(strings.NewReader(minimalSpec + gw + tc.edit))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := s.sequentialConfig().StickyClients, strings.Contains(tc.edit, "mode: hash"); got != want {
				t.Errorf("the analyzer is told the cohorts are sticky: %v, want %v", got, want)
			}
			if s.Analysis.Mode != tc.mode {
				t.Errorf("mode %q, want %q", s.Analysis.Mode, tc.mode)
			}
		})
	}
}
