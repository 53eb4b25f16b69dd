package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
	"github.com/canaryctl/canaryctl/rollout/deploy"
)

var t0 = time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)

// testSpec: three steps of 3 minutes, warm-up 30s, interval 1m: intervals at 1m30, 2m30 and 3m.
func testSpec() *Spec {
	s := &Spec{
		Service: "checkout",
		Stable:  StableSpec{Addresses: []string{"http://127.0.0.1:18000"}},
		Deploy: deploy.Config{
			Baseline: deploy.Target{Type: deploy.Static, Addresses: []string{"http://127.0.0.1:18001"}},
			Canary:   deploy.Target{Type: deploy.Static, Addresses: []string{"http://127.0.0.1:18002"}},
		},
		Gateway: GatewaySpec{Type: "builtin", Listen: "127.0.0.1:18080"},
		// These tests drive the Kayenta mode with a fake judge; sequential_test.go drives the default.
		Analysis: AnalysisSpec{Mode: ModeKayenta},
	}
	for _, w := range []float64{2.5, 10, 100} {
		s.Steps = append(s.Steps, StepSpec{Weight: w, Duration: 3 * time.Minute, Interval: time.Minute, Warmup: 30 * time.Second})
	}
	s.SetDefaults()
	return s
}

// ratioJudge is a small deterministic judge: a metric is High when the canary's mean exceeds the
// baseline's by more than its allowed increase, Nodata without points; the score is the share of
// passing metrics, 0 when a critical metric is High.
func ratioJudge(_ context.Context, pairs []MetricPair) (Judgement, error) {
	var j Judgement
	pass, critical := 0, false
	for _, p := range pairs {
		b, c := mean(p.Pair.Baseline), mean(p.Pair.Canary)
		mr := MetricResult{Name: p.Metric.Name, BaselineMean: Number(b), CanaryMean: Number(c), Ratio: Number(c / b)}
		switch {
		case math.IsNaN(b) || math.IsNaN(c):
			mr.Classification = "Nodata"
			pass++
		case c > b*p.Metric.EffectSize.AllowedIncrease:
			mr.Classification, mr.Critical, mr.Reason = "High", p.Metric.Critical, fmt.Sprintf("ratio %.2f", c/b)
			critical = critical || p.Metric.Critical
		default:
			mr.Classification = "Pass"
			pass++
		}
		j.Metrics = append(j.Metrics, mr)
	}
	j.Score = 100 * float64(pass) / float64(len(pairs))
	if critical {
		j.Score = 0
	}
	return j, nil
}

func mean(v []float64) float64 {
	s, n := 0.0, 0
	for _, x := range v {
		if !math.IsNaN(x) {
			s += x
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return s / float64(n)
}

type recordingNotifier struct {
	mu    sync.Mutex
	notes []Notification
}

func (r *recordingNotifier) Notify(_ context.Context, n Notification) error {
	r.mu.Lock()
	r.notes = append(r.notes, n)
	r.mu.Unlock()
	return nil
}

func (r *recordingNotifier) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, n := range r.notes {
		out = append(out, n.Event)
	}
	return out
}

type harness struct {
	t        *testing.T
	spec     *Spec
	root     string
	clock    *fake.Clock
	gw       *fake.Gateway
	metrics  *fake.Metrics
	deployer *fake.Deployer
	judge    Judge
	store    *Store
	eng      *Engine
	notifier *recordingNotifier
	progress bytes.Buffer
	events   bytes.Buffer
	mod      func(*Config)
}

func newHarness(t *testing.T, spec *Spec, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, spec: spec, root: t.TempDir(), clock: fake.NewClock(t0), gw: fake.NewGateway(),
		metrics: fake.NewMetrics(), deployer: fake.NewDeployer(), judge: JudgeFunc(ratioJudge),
		notifier: &recordingNotifier{}, mod: mod}
	h.open()
	if err := h.eng.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { h.eng.Close() })
	return h
}

// open builds a new engine on the same state directory and fakes (a new process after a crash).
func (h *harness) open() {
	h.t.Helper()
	store, err := OpenStore(StoreConfig{Root: h.root, Service: h.spec.Service})
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := Config{Spec: h.spec, Gateway: h.gw, Metrics: h.metrics, Deployer: h.deployer, Judge: h.judge,
		Store: store, Clock: h.clock, Progress: &h.progress, Events: &h.events, Notifier: h.notifier,
		SpecYAML: []byte("service: checkout\n")}
	if h.mod != nil {
		h.mod(&cfg)
	}
	eng, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.store, h.eng = store, eng
}

// tick runs one tick; when the phase did not change and the engine waits, the clock moves to its wake.
func (h *harness) tick(ctx context.Context) Phase {
	h.t.Helper()
	before := h.eng.State().Phase
	p, err := h.eng.Tick(ctx)
	if err != nil {
		h.t.Fatalf("Tick in %s: %v", before, err)
	}
	if p == before && p != Paused {
		if w := h.eng.Wake(); w.After(h.clock.Now()) {
			h.clock.Advance(w.Sub(h.clock.Now()))
		}
	}
	return p
}

// until ticks until the phase is want (at most 200 ticks).
func (h *harness) until(want Phase) {
	h.t.Helper()
	for i := 0; i < 200; i++ {
		if h.eng.State().Phase == want {
			return
		}
		if p := h.tick(h.t.Context()); p.Terminal() && p != want {
			h.t.Fatalf("reached %s (%s) while waiting for %s", p, h.eng.State().Reason, want)
		}
	}
	h.t.Fatalf("no %s after 200 ticks; phase %s", want, h.eng.State().Phase)
}

// finish ticks until the rollout ends and returns the final phase.
func (h *harness) finish() Phase {
	h.t.Helper()
	for i := 0; i < 500; i++ {
		if p := h.tick(h.t.Context()); p.Terminal() {
			return p
		}
	}
	h.t.Fatalf("rollout did not end; phase %s", h.eng.State().Phase)
	return ""
}

func (h *harness) post(a Action) {
	h.t.Helper()
	if _, err := h.store.PostControl(ControlRequest{Action: a, By: "test"}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) transitions() []string {
	evs, err := h.store.ReadEvents()
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		if ev.Type == EvTransition {
			out = append(out, string(ev.From)+">"+string(ev.Phase))
		}
	}
	return out
}

func TestTransitionTable(t *testing.T) {
	t.Parallel()
	want := map[Phase][]Phase{
		Pending:     {Deploying, RollingBack},
		Deploying:   {Progressing, RollingBack},
		Progressing: {Analyzing, Paused, Promoting, RollingBack},
		Analyzing:   {Progressing, Paused, Promoting, RollingBack},
		Paused:      {Progressing, Promoting, RollingBack},
		Promoting:   {Promoted, RollingBack},
		RollingBack: {RolledBack, Failed},
		Promoted:    nil,
		RolledBack:  nil,
		Failed:      nil,
	}
	for _, from := range Phases {
		t.Run(string(from), func(t *testing.T) {
			if got := Transitions(from); !slices.Equal(got, want[from]) {
				t.Errorf("Transitions(%s) = %v, want %v", from, got, want[from])
			}
			for _, to := range Phases {
				if got := CanTransition(from, to); got != slices.Contains(want[from], to) {
					t.Errorf("CanTransition(%s, %s) = %v", from, to, got)
				}
			}
			if from.Terminal() != (len(want[from]) == 0) {
				t.Errorf("%s.Terminal() = %v", from, from.Terminal())
			}
			// Every phase that is not terminal can send traffic back to stable.
			if !from.Terminal() && from != RollingBack && !CanTransition(from, RollingBack) {
				t.Errorf("%s cannot roll back", from)
			}
		})
	}
	if len(want) != len(Phases) {
		t.Errorf("Phases has %d entries, table %d", len(Phases), len(want))
	}
}

func TestGoodCanaryIsPromoted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testSpec(), nil)
	// Tick by tick: one transition at most per tick, in lifecycle order.
	var seen []Phase
	for i := 0; i < 100 && !h.eng.State().Phase.Terminal(); i++ {
		n := len(h.transitions())
		p := h.tick(t.Context())
		if d := len(h.transitions()) - n; d > 1 {
			t.Fatalf("tick %d made %d transitions", i, d)
		}
		if len(seen) == 0 || seen[len(seen)-1] != p {
			seen = append(seen, p)
		}
	}
	wantSeq := []Phase{Deploying, Progressing, Analyzing, Progressing, Analyzing, Progressing, Analyzing, Promoting, Promoted}
	if !slices.Equal(seen, wantSeq) {
		t.Fatalf("phases %v, want %v", seen, wantSeq)
	}
	st := h.eng.State()
	if len(st.Intervals) != 9 {
		t.Errorf("%d intervals, want 9 (3 per step)", len(st.Intervals))
	}
	for _, iv := range st.Intervals {
		if iv.Verdict != VerdictPass {
			t.Errorf("interval %+v not pass", iv)
		}
	}
	if !st.Intervals[2].Final || st.Intervals[2].At != t0.Add(3*time.Minute) {
		t.Errorf("step 1 final interval %+v, want final at the 3rd minute", st.Intervals[2])
	}
	wantSplits := []providers.Split{{}, {Canary: 250, Baseline: 250}, {Canary: 1000, Baseline: 1000}, {Canary: 5000, Baseline: 5000}, {}}
	if got := h.gw.SplitHistory(); !slices.Equal(got, wantSplits) {
		t.Errorf("splits %v, want %v", got, wantSplits)
	}
	if h.gw.Count("Promote") != 1 || h.gw.Count("Rollback") != 0 {
		t.Errorf("gateway calls %v", h.gw.Calls())
	}
	if got := h.gw.Upstreams(providers.Stable); !slices.Equal(got, []string{"http://127.0.0.1:18002"}) {
		t.Errorf("stable upstreams after promotion %v, want the canary's", got)
	}
	if h.deployer.Deployed(providers.Baseline) || !h.deployer.Deployed(providers.Canary) {
		t.Errorf("after promotion baseline must be torn down and canary kept: %v", h.deployer.Calls())
	}
	if got := strings.Count(h.progress.String(), "\n"); got != 9 {
		t.Errorf("%d progress lines, want 9:\n%s", got, h.progress.String())
	}
	if !strings.Contains(h.progress.String(), "checkout step 2/3 stable 80% baseline 10% canary 10% | interval 1 | samples baseline 10 canary 10 | score 100 | pass") {
		t.Errorf("progress:\n%s", h.progress.String())
	}
	if got := h.notifier.events(); !slices.Equal(got, []string{EventStarted, EventPromoted}) {
		t.Errorf("notifications %v", got)
	}
	disk, err := h.store.LoadState()
	if err != nil || disk.Phase != Promoted || len(disk.Intervals) != 9 {
		t.Fatalf("state on disk: %v %+v", err, disk)
	}
	// --events gets the same lines as events.jsonl.
	file, _ := h.store.ReadEvents()
	if got := strings.Count(h.events.String(), "\n"); got != len(file) {
		t.Errorf("--events has %d lines, events.jsonl %d", got, len(file))
	}
}

func TestBadCanaryFailsFastAndRollsBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testSpec(), nil)
	h.metrics.Set(fake.Worse(10, "5xx-rate", 3))
	if p := h.finish(); p != RolledBack {
		t.Fatalf("phase %s, want RolledBack", p)
	}
	st := h.eng.State()
	if len(st.Intervals) != 1 {
		t.Errorf("%d intervals judged, want 1 (fail-fast)", len(st.Intervals))
	}
	if st.Verdict != VerdictFail || st.Score == nil || *st.Score != 0 {
		t.Errorf("verdict %s score %v", st.Verdict, st.Score)
	}
	if !strings.Contains(st.Reason, "step 1/3 (2.5%) interval 1: score 0 <= marginal 75: 5xx-rate High (critical)") {
		t.Errorf("reason %q", st.Reason)
	}
	if h.gw.Count("Rollback") != 1 || h.gw.Current() != (providers.Split{}) || len(h.gw.Upstreams(providers.Canary)) != 0 {
		t.Errorf("gateway: calls %v split %v", h.gw.Calls(), h.gw.Current())
	}
	if h.deployer.Deployed(providers.Canary) || h.deployer.Deployed(providers.Baseline) {
		t.Errorf("deployments not torn down: %v", h.deployer.Calls())
	}
	if got := h.notifier.events(); !slices.Equal(got, []string{EventStarted, EventRolledBack}) {
		t.Errorf("notifications %v", got)
	}
	if slices.ContainsFunc(h.gw.SplitHistory(), func(s providers.Split) bool { return s.Canary > 250 }) {
		t.Errorf("traffic grew beyond the first step: %v", h.gw.SplitHistory())
	}
}

func TestConsecutiveErrors(t *testing.T) {
	t.Parallel()
	t.Run("limit reached rolls back", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil)
		h.metrics.Fail("Pair", 1000, nil)
		if p := h.finish(); p != RolledBack {
			t.Fatalf("phase %s", p)
		}
		st := h.eng.State()
		if len(st.Intervals) != 4 || !strings.Contains(st.Reason, "4 consecutive errors (limit 4)") {
			t.Errorf("%d intervals, reason %q", len(st.Intervals), st.Reason)
		}
		if h.gw.Count("Rollback") != 1 {
			t.Errorf("calls %v", h.gw.Calls())
		}
	})
	t.Run("errors below the limit are tolerated", func(t *testing.T) {
		t.Parallel()
		spec := testSpec()
		for i := range spec.Steps {
			spec.Steps[i].Duration = 10 * time.Minute
		}
		h := newHarness(t, spec, nil)
		h.metrics.Fail("Pair", 3, nil) // three intervals of errors, then data
		if p := h.finish(); p != Promoted {
			t.Fatalf("phase %s: %s", p, h.eng.State().Reason)
		}
		errs := 0
		for _, iv := range h.eng.State().Intervals {
			if iv.Verdict == VerdictError {
				errs++
			}
		}
		if errs != 3 {
			t.Errorf("%d error intervals, want 3", errs)
		}
	})
}

func TestPauseHoldsTheSplitAndResumeRestartsTheStep(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testSpec(), nil)
	h.until(Analyzing)
	for len(h.eng.State().Intervals) == 0 {
		h.tick(t.Context()) // up to the first interval of step 1
	}
	h.post(ActionPause)
	if p := h.tick(t.Context()); p != Paused {
		t.Fatalf("phase %s after pause", p)
	}
	calls := h.metrics.Calls()
	for i := 0; i < 20; i++ {
		h.clock.Advance(time.Minute)
		if p := h.tick(t.Context()); p != Paused {
			t.Fatalf("left Paused: %s", p)
		}
	}
	if h.gw.Current() != (providers.Split{Canary: 250, Baseline: 250}) {
		t.Errorf("split %v not held", h.gw.Current())
	}
	if h.metrics.Calls() != calls {
		t.Errorf("paused rollout fetched metrics")
	}
	h.post(ActionResume)
	if p := h.tick(t.Context()); p != Progressing {
		t.Fatalf("phase %s after resume", p)
	}
	if p := h.finish(); p != Promoted {
		t.Fatalf("phase %s", p)
	}
	if n := len(h.eng.State().Intervals); n != 10 {
		t.Errorf("%d intervals, want 1 before the pause + 3 for the restarted step + 6", n)
	}
}

func TestPauseTimeoutRollsBack(t *testing.T) {
	t.Parallel()
	spec := testSpec()
	spec.PauseTimeout = 10 * time.Minute
	h := newHarness(t, spec, nil)
	h.until(Analyzing)
	h.post(ActionPause)
	h.tick(t.Context())
	h.clock.Advance(9 * time.Minute)
	if p := h.tick(t.Context()); p != Paused {
		t.Fatalf("phase %s before the timeout", p)
	}
	h.clock.Advance(time.Minute)
	if p := h.finish(); p != RolledBack || !strings.Contains(h.eng.State().Reason, "paused for 10m0s (pauseTimeout)") {
		t.Fatalf("phase %s reason %q", p, h.eng.State().Reason)
	}
}

func TestPromoteSkipsRemainingSteps(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testSpec(), nil)
	h.until(Analyzing)
	h.post(ActionPromote)
	if p := h.tick(t.Context()); p != Promoting {
		t.Fatalf("phase %s", p)
	}
	if p := h.finish(); p != Promoted {
		t.Fatalf("phase %s", p)
	}
	if slices.ContainsFunc(h.gw.SplitHistory(), func(s providers.Split) bool { return s.Canary > 250 }) {
		t.Errorf("steps not skipped: %v", h.gw.SplitHistory())
	}
	// A person decided, not the judge: the final reason says so (the last look may have said
	// need-more-data).
	if r := h.eng.State().Reason; !strings.Contains(r, "canary is the new stable") || !strings.HasPrefix(r, "promoted manually by test at step 1/") {
		t.Errorf("reason %q", r)
	}
}

func TestManualApprovalStep(t *testing.T) {
	t.Parallel()
	spec := testSpec()
	spec.Steps[1].Approval = true
	h := newHarness(t, spec, func(c *Config) { c.DetachOnPause = true })
	h.until(Paused)
	st := h.eng.State()
	if st.Pause == nil || st.Pause.Kind != PauseApproval || st.Step != 1 || !strings.Contains(st.Pause.Reason, "canaryctl promote checkout") {
		t.Fatalf("pause %+v step %d", st.Pause, st.Step)
	}
	if h.gw.Current() != (providers.Split{Canary: 250, Baseline: 250}) {
		t.Errorf("split %v: step 2 must not start before approval", h.gw.Current())
	}
	for i := 0; i < 5; i++ {
		h.clock.Advance(time.Minute)
		h.tick(t.Context())
	}
	h.post(ActionPromote) // approves the step, does not skip it
	if p := h.tick(t.Context()); p != Progressing {
		t.Fatalf("phase %s after approval", p)
	}
	if p := h.finish(); p != Promoted {
		t.Fatalf("phase %s", p)
	}
	if !slices.Contains(h.gw.SplitHistory(), providers.Split{Canary: 1000, Baseline: 1000}) {
		t.Errorf("approved step did not run: %v", h.gw.SplitHistory())
	}
	if got := h.notifier.events(); !slices.Equal(got, []string{EventStarted, EventPaused, EventPromoted}) {
		t.Errorf("notifications %v", got)
	}
}

func TestMarginalStep(t *testing.T) {
	t.Parallel()
	// One of two metrics high (not critical) gives 50: between marginal 40 and pass 95.
	spec := testSpec()
	spec.Analysis.Thresholds = Thresholds{Pass: 95, Marginal: 40}
	spec.Analysis.Metrics[1].Critical = false
	for _, tc := range []struct {
		name       string
		onMarginal string
		want       Phase
	}{{"pause then accept", "pause", Promoted}, {"rollback", "rollback", RolledBack}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := *spec
			s.OnMarginal = tc.onMarginal
			h := newHarness(t, &s, nil)
			h.metrics.Set(fake.Worse(10, "p99-latency", 2))
			if tc.onMarginal == "pause" {
				h.until(Paused)
				if st := h.eng.State(); st.Pause.Kind != PauseMarginal || len(st.Intervals) != 3 {
					t.Fatalf("pause %+v after %d intervals", st.Pause, len(st.Intervals))
				}
				h.metrics.Set(fake.Same(10))
				h.post(ActionResume)
			}
			if p := h.finish(); p != tc.want {
				t.Fatalf("phase %s: %s", p, h.eng.State().Reason)
			}
		})
	}
}

func TestAbort(t *testing.T) {
	t.Parallel()
	for _, at := range []Phase{Pending, Deploying, Progressing, Analyzing, Paused} {
		t.Run(string(at), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, testSpec(), nil)
			if at == Paused {
				h.until(Analyzing)
				h.post(ActionPause)
			}
			h.until(at)
			h.post(ActionAbort)
			if p := h.tick(t.Context()); p != RollingBack {
				t.Fatalf("phase %s after abort", p)
			}
			if p := h.finish(); p != RolledBack {
				t.Fatalf("phase %s", p)
			}
			st := h.eng.State()
			if !strings.HasPrefix(st.Reason, "aborted by test") || st.Verdict != "" {
				t.Errorf("reason %q verdict %q", st.Reason, st.Verdict)
			}
			if h.gw.Current() != (providers.Split{}) || h.deployer.Deployed(providers.Canary) {
				t.Errorf("split %v, deployer %v", h.gw.Current(), h.deployer.Calls())
			}
		})
	}
}

func TestInterrupt(t *testing.T) {
	t.Parallel()
	t.Run("rollback", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil)
		h.until(Analyzing)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if p, _ := h.eng.Tick(ctx); p != RollingBack {
			t.Fatalf("phase %s after cancel", p)
		}
		// The rollback runs although ctx is cancelled (the fake gateway refuses done contexts).
		o, err := h.eng.Run(ctx)
		if err != nil || o.Phase != RolledBack || !o.Interrupted {
			t.Fatalf("outcome %+v err %v", o, err)
		}
		if h.gw.Count("Rollback") != 1 || h.gw.Current() != (providers.Split{}) {
			t.Errorf("calls %v", h.gw.Calls())
		}
	})
	t.Run("pause", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), func(c *Config) { c.OnInterrupt = InterruptPause })
		h.until(Analyzing)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		o, err := h.eng.Run(ctx)
		if err != nil || o.Phase != Paused || !o.Interrupted || !o.Detached {
			t.Fatalf("outcome %+v err %v", o, err)
		}
		if h.gw.Current() != (providers.Split{Canary: 250, Baseline: 250}) || h.gw.Count("Rollback") != 0 {
			t.Errorf("split %v calls %v", h.gw.Current(), h.gw.Calls())
		}
	})
}

func TestRollbackIsRetried(t *testing.T) {
	t.Parallel()
	t.Run("succeeds on the third attempt", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil)
		h.metrics.Set(fake.Worse(10, "5xx-rate", 3))
		h.gw.Fail("Rollback", 2, nil)
		if p := h.finish(); p != RolledBack {
			t.Fatalf("phase %s", p)
		}
		if n := h.gw.Count("Rollback"); n != 3 {
			t.Errorf("%d rollback calls, want 3", n)
		}
		if h.gw.Current() != (providers.Split{}) {
			t.Errorf("split %v", h.gw.Current())
		}
	})
	t.Run("a 404 is not success", func(t *testing.T) {
		t.Parallel()
		// The gateway lost what the rollout changed (Kong restarted without its database): no write
		// succeeded, so the rollout must not report RolledBack.
		h := newHarness(t, testSpec(), func(c *Config) { c.RollbackAttempts = 2 })
		h.metrics.Set(fake.Worse(10, "5xx-rate", 3))
		h.gw.Fail("Rollback", 1000, fmt.Errorf("upstream gone: %w", providers.ErrNotFound))
		if p := h.finish(); p != Failed {
			t.Fatalf("phase %s (%s), want Failed", p, h.eng.State().Reason)
		}
		if n := h.gw.Count("Rollback"); n != 2 {
			t.Errorf("%d rollback calls, want 2 (retried)", n)
		}
	})
	t.Run("a signal while it fails: one last attempt", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil) // 10 attempts with back-off by default
		h.metrics.Set(fake.Worse(10, "5xx-rate", 3))
		h.gw.Fail("Rollback", 1000, errors.New("dial tcp 127.0.0.1:1: connection refused"))
		for h.gw.Count("Rollback") < 2 {
			h.tick(t.Context())
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // SIGTERM
		for i := 0; i < 10 && !h.eng.State().Phase.Terminal(); i++ {
			if _, err := h.eng.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if p := h.eng.State().Phase; p != Failed {
			t.Fatalf("phase %s after the signal, want Failed", p)
		}
		if n := h.gw.Count("Rollback"); n != 3 {
			t.Errorf("%d rollback calls, want 3 (2 before the signal, one last after it)", n)
		}
	})
	t.Run("gives up as Failed", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), func(c *Config) { c.RollbackAttempts = 3 })
		h.metrics.Set(fake.Worse(10, "5xx-rate", 3))
		h.gw.Fail("Rollback", 1000, nil)
		if p := h.finish(); p != Failed {
			t.Fatalf("phase %s", p)
		}
		st := h.eng.State()
		if !strings.Contains(st.Reason, "rollback failed 3 times") || !strings.Contains(st.Reason, "5xx-rate High") {
			t.Errorf("reason %q", st.Reason)
		}
		if got := h.notifier.events(); got[len(got)-1] != EventFailed {
			t.Errorf("notifications %v", got)
		}
	})
}

func TestGatewayAndDeployErrorsRollBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		inject func(h *harness)
		reason string
	}{
		{"set split", func(h *harness) { h.gw.Fail("SetSplit", 1, nil) }, "deploying: set split 0/0 bp"},
		{"set upstreams", func(h *harness) { h.gw.Fail("SetUpstreams", 1, nil) }, "deploying: set stable upstreams"},
		{"deploy", func(h *harness) { h.deployer.Fail("Deploy", 1, nil) }, "deploying: deploy baseline"},
		{"read back", func(h *harness) { h.gw.Fail("Split", 1, nil) }, "read back split"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, testSpec(), nil)
			tc.inject(h)
			if p := h.finish(); p != RolledBack {
				t.Fatalf("phase %s", p)
			}
			if st := h.eng.State(); !strings.Contains(st.Reason, tc.reason) {
				t.Errorf("reason %q, want %q", st.Reason, tc.reason)
			}
			if h.gw.Current() != (providers.Split{}) || h.deployer.Deployed(providers.Canary) || h.deployer.Deployed(providers.Baseline) {
				t.Errorf("not cleaned up: %v %v", h.gw.Current(), h.deployer.Calls())
			}
			// No traffic moved: the rollout could not run, which CI must tell from a bad canary.
			if st := h.eng.State(); !st.NotStarted || NewReport(h.spec, st).Phase != NotStarted {
				t.Errorf("a failure before any traffic moved: NotStarted %v, report phase %s", st.NotStarted, NewReport(h.spec, st).Phase)
			}
		})
	}
}

// TestFailureAfterTrafficMovedIsNotNotStarted: once a step's split was set, a gateway failure is a
// rollback like any other (RolledBack), never NotStarted.
func TestFailureAfterTrafficMovedIsNotNotStarted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testSpec(), nil)
	h.until(Analyzing)              // step 1's split is set: traffic reaches the canary
	h.gw.Fail("SetSplit", 100, nil) // step 2's split cannot be set
	if p := h.finish(); p != RolledBack {
		t.Fatalf("phase %s", p)
	}
	if st := h.eng.State(); st.NotStarted || NewReport(h.spec, st).Phase != RolledBack {
		t.Errorf("a failure after traffic moved: NotStarted %v, report phase %s", st.NotStarted, NewReport(h.spec, st).Phase)
	}
}

type panicDeployer struct{ *fake.Deployer }

func (panicDeployer) Deploy(context.Context, providers.Cohort) ([]string, error) { panic("boom") }

func TestPanicsRollBack(t *testing.T) {
	t.Parallel()
	t.Run("handler", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), func(c *Config) { c.Deployer = panicDeployer{fake.NewDeployer()} })
		if p := h.finish(); p != RolledBack || !strings.Contains(h.eng.State().Reason, "panic in Deploying handler: boom") {
			t.Fatalf("phase %s reason %q", p, h.eng.State().Reason)
		}
	})
	t.Run("judge", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), func(c *Config) {
			c.Judge = JudgeFunc(func(context.Context, []MetricPair) (Judgement, error) { panic("judge boom") })
		})
		if p := h.finish(); p != RolledBack || !strings.Contains(h.eng.State().Reason, "judge: panic: judge boom") {
			t.Fatalf("phase %s reason %q", p, h.eng.State().Reason)
		}
	})
}

func TestResumeFromEveryPhase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at    Phase
		reset bool // the gateway lost its state (an embedded proxy died with the process)
		want  Phase
	}{
		{Pending, false, Promoted},
		{Deploying, true, Promoted},
		{Progressing, true, Promoted},
		{Analyzing, false, Promoted},
		{Analyzing, true, Promoted},
		{Paused, true, Promoted},
		{Promoting, false, Promoted},
		{Promoting, true, Promoted},
		{RollingBack, false, RolledBack},
		{Promoted, false, Promoted},
		{RolledBack, false, RolledBack},
	} {
		t.Run(fmt.Sprintf("%s reset=%v", tc.at, tc.reset), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, testSpec(), nil)
			switch tc.at {
			case Paused:
				h.until(Analyzing)
				h.post(ActionPause)
			case RollingBack, RolledBack:
				h.until(Analyzing)
				h.post(ActionAbort)
			case Promoting:
				h.until(Analyzing)
				h.tick(t.Context())
				h.post(ActionPromote)
			}
			h.until(tc.at)
			stepBefore := h.eng.State().Step
			// Crash: the process dies without cleanup; its lock goes with it.
			h.eng.Close()
			if tc.reset {
				h.gw.Reset()
			}
			h.clock.Advance(7 * time.Second)
			h.open()
			if err := h.eng.Resume(t.Context()); err != nil {
				t.Fatalf("Resume: %v", err)
			}
			st := h.eng.State()
			if st.Phase == Analyzing {
				t.Fatalf("resumed into Analyzing; the step must restart")
			}
			if !tc.at.Terminal() {
				evs, _ := h.store.ReadEvents()
				last := evs[len(evs)-1]
				if tc.at == Analyzing {
					last = evs[len(evs)-2]
				}
				if last.Type != EvResumed || last.Observed == nil {
					t.Fatalf("no resumed event with the observed split: %+v", last)
				}
			}
			if tc.at == Paused {
				h.tick(t.Context())
				if h.eng.State().Phase != Paused || h.gw.Current() != (providers.Split{Canary: 250, Baseline: 250}) {
					t.Fatalf("resumed pause does not hold the split: %s %v", h.eng.State().Phase, h.gw.Current())
				}
				h.post(ActionResume)
			}
			if p := h.finish(); p != tc.want {
				t.Fatalf("phase %s (%s), want %s", p, h.eng.State().Reason, tc.want)
			}
			if tc.want == Promoted {
				if got := h.gw.Upstreams(providers.Stable); !slices.Equal(got, []string{"http://127.0.0.1:18002"}) {
					t.Errorf("stable upstreams %v", got)
				}
				if st := h.eng.State(); st.Step < stepBefore {
					t.Errorf("step went back from %d to %d", stepBefore, st.Step)
				}
			} else if h.gw.Current() != (providers.Split{}) {
				t.Errorf("split %v", h.gw.Current())
			}
		})
	}
}

func TestStartRefusesUnfinishedAndLockedRollouts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testSpec(), nil)
	h.until(Analyzing)
	// Another process (here: another engine) cannot run the same service.
	other, _ := OpenStore(StoreConfig{Root: h.root, Service: "checkout"})
	e2, _ := New(Config{Spec: h.spec, Gateway: h.gw, Metrics: h.metrics, Deployer: h.deployer, Judge: h.judge, Store: other, Clock: h.clock})
	if err := e2.Start(t.Context()); !errors.Is(err, ErrLocked) {
		t.Fatalf("Start while locked: %v", err)
	}
	if err := e2.Resume(t.Context()); !errors.Is(err, ErrLocked) {
		t.Fatalf("Resume while locked: %v", err)
	}
	h.eng.Close()
	changed := testSpec()
	changed.Steps[1].Weight = 20
	e3, _ := New(Config{Spec: changed, Gateway: h.gw, Metrics: h.metrics, Deployer: h.deployer, Judge: h.judge, Store: other, Clock: h.clock})
	if err := e3.Resume(t.Context()); err == nil || !strings.Contains(err.Error(), "steps 2.5% -> 10% -> 100%, the spec 2.5% -> 20% -> 100%") {
		t.Fatalf("Resume with other steps: %v", err)
	}
	err := e2.Start(t.Context())
	var ue *UnfinishedError
	if !errors.As(err, &ue) || ue.Phase != Analyzing {
		t.Fatalf("Start over an unfinished rollout: %v", err)
	}
	e2.Close()
}

func TestRunWithAutoClock(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testSpec(), nil)
	h.clock.SetAuto(true)
	o, err := h.eng.Run(t.Context())
	if err != nil || o.Phase != Promoted || o.Verdict != VerdictPass {
		t.Fatalf("outcome %+v err %v", o, err)
	}
	// The report of the run has every interval.
	r := NewReport(h.spec, h.eng.State())
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, s := range back.Steps {
		if s.Outcome != "passed" || len(s.Intervals) != 3 {
			t.Errorf("step %d: %s with %d intervals", s.Index, s.Outcome, len(s.Intervals))
		}
	}
}

func TestControlPickedUpWithinOneTickByRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testSpec(), nil)
	h.until(Analyzing)
	h.clock.SetAuto(true)
	// A second "process" posts an abort through its own store.
	other, err := OpenStore(StoreConfig{Root: h.root, Service: "checkout"})
	if err != nil {
		t.Fatal(err)
	}
	if held, pid, _ := other.Holder(); !held || pid == 0 {
		t.Fatalf("Holder = %v %d while the engine runs", held, pid)
	}
	if _, err := other.PostControl(ControlRequest{Action: ActionAbort, By: "ci"}); err != nil {
		t.Fatal(err)
	}
	o, err := h.eng.Run(t.Context())
	if err != nil || o.Phase != RolledBack || !strings.Contains(o.Reason, "aborted by ci") {
		t.Fatalf("outcome %+v err %v", o, err)
	}
	if n := len(h.eng.State().Intervals); n != 0 {
		t.Errorf("%d intervals judged after the abort was posted", n)
	}
}

func TestPromotionFailures(t *testing.T) {
	t.Parallel()
	t.Run("retried", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil)
		h.gw.Fail("Promote", 2, nil)
		if p := h.finish(); p != Promoted || h.gw.Count("Promote") != 3 {
			t.Fatalf("phase %s, %d promote calls", p, h.gw.Count("Promote"))
		}
	})
	t.Run("gives up: rollback keeps the canary deployment", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil)
		h.gw.Fail("Promote", 100, nil)
		if p := h.finish(); p != RolledBack {
			t.Fatalf("phase %s", p)
		}
		st := h.eng.State()
		if !strings.Contains(st.Reason, "promote: 3 attempts failed") || !strings.Contains(st.Reason, "canary deployment is kept") {
			t.Errorf("reason %q", st.Reason)
		}
		if !h.deployer.Deployed(providers.Canary) || h.deployer.Deployed(providers.Baseline) || h.gw.Current() != (providers.Split{}) {
			t.Errorf("deployer %v split %v", h.deployer.Calls(), h.gw.Current())
		}
	})
	t.Run("interrupt finishes the promotion", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil)
		h.until(Promoting)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		o, err := h.eng.Run(ctx)
		if err != nil || o.Phase != Promoted || !o.Interrupted || h.gw.Count("Rollback") != 0 {
			t.Fatalf("outcome %+v err %v calls %v", o, err, h.gw.Calls())
		}
	})
}
