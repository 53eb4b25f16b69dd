package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

// Judging modes (analysis.mode).
const (
	ModeSequential = "sequential"
	ModeKayenta    = "kayenta"
)

// Modes lists the judging modes.
var Modes = []string{ModeSequential, ModeKayenta}

// VerdictNeedMoreData: a sequential look that could neither fail nor pass the canary yet.
const VerdictNeedMoreData Verdict = "need-more-data"

// PauseNeedMoreData: a step still undecided at analysis.sequential.maxBake paused the rollout.
// canaryctl promote (or resume) accepts the step, canaryctl abort rolls back.
const PauseNeedMoreData = "need-more-data"

// SequentialSpec configures analysis.mode sequential: request-level tests of package
// analysis/sequential (5xx rate, a 5xx guard against baseline plus stable, latency median and tail),
// looked at every LookInterval. Zero fields take the defaults, which are the simulator's (canaryctl
// simulate), so its published table describes these settings.
type SequentialSpec struct {
	// Alpha bounds the probability of rolling back a canary that is no worse than the baseline, over
	// the whole rollout however often it looks (default 0.01).
	Alpha float64 `yaml:"alpha" json:"alpha"`
	// Beta bounds, per metric, the probability of passing a canary worse by the margin (default 0.05).
	Beta float64 `yaml:"beta" json:"beta"`
	// The margins are the minimum detectable effects: a step passes when the data exclude a regression
	// this large. ErrorMargin is the 5xx-rate increase in percentage points (default 0.75, below the
	// 1 pp the simulator must detect, so a canary exactly 1 pp worse is not passed).
	ErrorMargin float64 `yaml:"errorMargin" json:"errorMargin"`
	// MedianMargin is the increase, in percentage points, of the share of canary requests slower than
	// the baseline's median (default 10: from 50% to 60%; +20 ms on an 80 ms median is about +20).
	MedianMargin float64 `yaml:"medianMargin" json:"medianMargin"`
	// TailQuantile is the latency quantile watched for tail regressions (default 0.99).
	TailQuantile float64 `yaml:"tailQuantile" json:"tailQuantile"`
	// TailMargin is the increase, in percentage points, of the share of canary requests slower than
	// the baseline's TailQuantile (default 1: from 1% to 2%). Explanations give the thresholds in ms.
	TailMargin float64 `yaml:"tailMargin" json:"tailMargin"`
	// GuardRatio is the canary/control 5xx rate ratio tolerated by the fast guard (default 1.5).
	GuardRatio float64 `yaml:"guardRatio" json:"guardRatio"`
	// FreshFactor is how many times as often as warm stable freshly deployed instances may fail
	// without being a regression (default 3): the fast 5xx test rolls back within seconds a canary
	// whose 5xx rate is beyond freshFactor times stable's and beyond its baseline's; the guard
	// compares the canary with stable beyond guardRatio × freshFactor. Raise it if your instances fail
	// more than that while warming up; lower it (down to 1) for faster rollbacks of large error
	// regressions (1.5: the simulator's 10%-5xx canary at 200 req/s in a median of 12.2 s instead of
	// 15.2, at 5 req/s 87.5% within 15 minutes instead of 73.5%; good canaries with fresh instances at
	// 3x stable's 5xx rate then roll back 1.1% of the time).
	FreshFactor float64 `yaml:"freshFactor" json:"freshFactor"`
	// BlockCap bounds, in nats, the evidence any 5 s of requests may add to a test (default 0.75):
	// a burst of dependent requests (one instance's bad moment, a GC storm) then weighs a few blocks,
	// not thousands of independent requests. With two or more named canary instances it applies to
	// the per-instance tests and the whole canary's Fail test is not capped. Raise it only when
	// requests are independent (the demo's synthetic service).
	BlockCap float64 `yaml:"blockCap" json:"blockCap"`
	// ThresholdSamples: baseline requests that estimate the latency thresholds (median, tail quantile)
	// before the latency tests start (default 100, at least 10). Fewer start sooner with a noisier
	// threshold; the error control holds either way (the threshold only uses earlier requests).
	ThresholdSamples int `yaml:"thresholdSamples" json:"thresholdSamples"`
	// LookInterval: how often new requests are fetched and judged (default 250ms).
	LookInterval time.Duration `yaml:"lookInterval" json:"lookInterval"`
	// MinBake: a pass advances a step only after it baked this long, or its duration if shorter
	// (default 1m).
	MinBake time.Duration `yaml:"minBake" json:"minBake"`
	// MaxBake: a step still undecided after its duration is extended up to MaxBake, then the rollout
	// pauses; lack of data never fails a canary (default 15m).
	MaxBake time.Duration `yaml:"maxBake" json:"maxBake"`
	// ExpandFactor: an undecided step that baked its duration moves on to the next step (never from the
	// last) when the data exclude ExpandFactor times every margin (default 3); asked at the end of the
	// step's duration, then every 10 s or every interval of the step if shorter.
	ExpandFactor float64 `yaml:"expandFactor" json:"expandFactor"`
}

// perRequestSource reports whether the metrics source gives per-request data.
func perRequestSource(metricsType string) bool {
	t, ok := providers.LookupMetrics(metricsType)
	return ok && t.PerRequest()
}

// stickyKey names the gateway setting that keeps a user on one cohort ("" when the split is per
// request): then canary and baseline serve different user populations, and the request-level
// tests' premise, that the two requests of a pair are exchangeable draws of the same traffic,
// fails; the analyzer judges clients instead (sequential.Config.StickyClients).
func (s *Spec) stickyKey() string { return s.GatewayCaps().Sticky }

func (s *Spec) setSequentialDefaults() {
	a := &s.Analysis
	if a.Mode == "" {
		a.Mode = ModeKayenta
		// Before/after judging (bluegreen) has no concurrent streams for the sequential tests.
		// Sticky cohorts are judged by client (see stickyKey): Kayenta's interval series compare
		// two user populations as if they were one and rolled back 37.5% of good canaries.
		if perRequestSource(s.Metrics.Type) && !s.BeforeAfter() {
			a.Mode = ModeSequential
		}
	}
	q := &a.Sequential
	d := sequential.DefaultConfig()
	def := func(v *float64, x float64) {
		if *v == 0 {
			*v = x
		}
	}
	def(&q.Alpha, d.Alpha)
	def(&q.Beta, d.Beta)
	def(&q.ErrorMargin, 100*d.ErrorMargin)
	def(&q.MedianMargin, 100*d.MedianMargin)
	def(&q.TailQuantile, d.TailQuantile)
	def(&q.TailMargin, 100*d.TailMargin)
	def(&q.GuardRatio, d.GuardRatio)
	def(&q.FreshFactor, d.FreshFactor)
	def(&q.BlockCap, d.BlockCap)
	def(&q.ExpandFactor, sequential.DefaultExpandFactor)
	if q.ThresholdSamples == 0 {
		q.ThresholdSamples = d.MinThresholdSamples
	}
	if q.LookInterval == 0 {
		q.LookInterval = sequential.DefaultLookInterval
	}
	if q.MinBake == 0 {
		q.MinBake = sequential.DefaultMinBake
	}
	if q.MaxBake == 0 {
		q.MaxBake = sequential.DefaultMaxBake
	}
}

// analyzerConfig converts the spec's units (percentage points) to the analyzer's (fractions).
func (q SequentialSpec) analyzerConfig() sequential.Config {
	d := sequential.DefaultConfig()
	return sequential.Config{Alpha: q.Alpha, Beta: q.Beta, ErrorMargin: q.ErrorMargin / 100,
		MedianMargin: q.MedianMargin / 100, TailQuantile: q.TailQuantile, TailMargin: q.TailMargin / 100,
		GuardRatio: q.GuardRatio, FreshFactor: q.FreshFactor, BlockCap: q.BlockCap, MinThresholdSamples: q.ThresholdSamples,
		// pairing slots: the analyzer's defaults (not spec settings)
		SlotRequests: d.SlotRequests, MinSlot: d.MinSlot, MaxSlot: d.MaxSlot, Seed: d.Seed}
}

// sequentialConfig is the analyzer's configuration for this rollout: the spec's settings, whether the
// control is warm stable (no baseline), and whether the gateway keeps each client on one cohort (then
// the paired metrics' Fails are judged by client).
func (s *Spec) sequentialConfig() sequential.Config {
	cfg := s.Analysis.Sequential.analyzerConfig()
	cfg.WarmControl = !s.HasBaseline()
	cfg.StickyClients = s.stickyKey() != ""
	return cfg
}

// validateSequentialPremises checks what the sequential tests assume of the traffic: individual
// requests, and canary and control requests drawn from the same users.
func (s *Spec) validateSequentialPremises(bad func(string, string, ...any)) {
	if !perRequestSource(s.Metrics.Type) {
		bad("analysis.mode", "sequential judges individual requests, which metrics.type %s does not give; use mode kayenta or a per-request metrics source (builtin, kong-log)", s.Metrics.Type)
	}
}

func (s *Spec) validateSequential(bad func(string, string, ...any)) {
	a := s.Analysis
	if !slices.Contains(Modes, a.Mode) {
		bad("analysis.mode", "unknown mode %q; use %s", a.Mode, strings.Join(Modes, " or "))
		return
	}
	if a.Mode != ModeSequential {
		return
	}
	s.validateSequentialPremises(bad)
	q := a.Sequential
	p := "analysis.sequential."
	open01 := func(field string, v float64, eg string) {
		if !(v > 0 && v < 1) {
			bad(p+field, "%v must be between 0 and 1 (exclusive), e.g. %s", v, eg)
		}
	}
	points := func(field string, v, hi float64, eg string) {
		if !(v > 0 && v < hi) {
			bad(p+field, "%v must be in percentage points between 0 and %.4g (exclusive), e.g. %s", v, hi, eg)
		}
	}
	open01("alpha", q.Alpha, "0.01")
	open01("beta", q.Beta, "0.05")
	points("errorMargin", q.ErrorMargin, 100, "1 for +1 percentage point of 5xx")
	points("medianMargin", q.MedianMargin, 50, "10 for 60% of canary requests above the baseline's median")
	open01("tailQuantile", q.TailQuantile, "0.99")
	if q.TailQuantile > 0 && q.TailQuantile < 1 {
		points("tailMargin", q.TailMargin, 100*(1-q.TailQuantile), "1 for 2% of canary requests above the baseline's P99")
	}
	if !(q.GuardRatio >= 1 && q.GuardRatio <= 1024) {
		bad(p+"guardRatio", "%v must be between 1 and 1024, e.g. 1.5", q.GuardRatio)
	}
	if !(q.BlockCap > 0 && q.BlockCap <= 1000) {
		bad(p+"blockCap", "%v must be in nats between 0 (exclusive) and 1000, e.g. 0.75", q.BlockCap)
	}
	if !(q.FreshFactor >= 1 && q.FreshFactor <= 100) {
		bad(p+"freshFactor", "%v must be between 1 and 100, e.g. 3", q.FreshFactor)
	}
	if q.ThresholdSamples < 10 {
		bad(p+"thresholdSamples", "%d must be at least 10, e.g. 100", q.ThresholdSamples)
	}
	if !(q.ExpandFactor >= 1) || math.IsInf(q.ExpandFactor, 0) {
		bad(p+"expandFactor", "%v must be at least 1, e.g. 3", q.ExpandFactor)
	}
	if q.LookInterval < 10*time.Millisecond || q.LookInterval > time.Minute {
		bad(p+"lookInterval", "%s is out of range; use 10ms..1m, e.g. 250ms", dur(q.LookInterval))
	}
	if q.MinBake < 0 {
		bad(p+"minBake", "%s is negative; use a duration such as 1m", dur(q.MinBake))
	}
	if q.MaxBake < q.MinBake {
		bad(p+"maxBake", "%s is shorter than minBake (%s); make it at least minBake, e.g. 15m", dur(q.MaxBake), dur(q.MinBake))
	}
	for i, st := range s.Steps {
		if q.MaxBake < st.Duration {
			bad(p+"maxBake", "%s is shorter than steps[%d].duration (%s); make it at least the longest step, e.g. 15m", dur(q.MaxBake), i, dur(st.Duration))
			break
		}
	}
}

// requestLag is how far behind the clock looks read the request log, so that a request that finished
// before a look but reached the log after it is not skipped: Kong's http-log batches entries for up
// to its flush delay (default 1s); the built-in proxy records a request as it finishes.
func (s *Spec) requestLag() time.Duration {
	if d := s.GatewayCaps().LogDelay; d > 0 {
		return d + 250*time.Millisecond
	}
	return 50 * time.Millisecond
}

// seqState is the engine's in-memory state of mode sequential. It is not saved: a resumed rollout
// restarts its step with a new analyzer (Resume turns Analyzing into Progressing).
type seqState struct {
	a *sequential.Analyzer
	// cursor: requests before it were fed to the analyzer (or fell between steps).
	cursor time.Time
	// lastRecord: when the step last recorded an interval; nextExpand: when SafeToExpand is asked next.
	lastRecord, nextExpand time.Time
	looks                  int
	canary, baseline       int // requests of the step fed to the analyzer
	cohorts                cohortTallies
	extended               bool
	// ingest: what the request log lost or refused during the step's looks
	ingest providers.Ingest
	// leftOut: looks left out since the last record because entries were dropped, and how many
	leftOut, leftOutEntries int
	lossyPrev               bool // the last look lost entries
	// routes: per-route verdicts (analysis.routes, routes_looks.go)
	routes routeLooks
}

// looks is analysis.mode sequential: every LookInterval the requests the gateway logged since the
// last look are fed to the request-level tests of package analysis/sequential, which decide the step
// as soon as the data allow; the step's interval paces the recorded intervals and progress lines.
type looks struct {
	e   *Engine
	seq seqState
}

func (m *looks) check(cfg Config) error {
	if cfg.Requests == nil {
		return fmt.Errorf("new engine: %w", errNoRequestLog)
	}
	return nil
}

func (m *looks) prepare(context.Context, State, StepSpec) (bool, Phase, string) { return true, "", "" }

func (m *looks) begin(now time.Time, _ State, step StepSpec) string {
	m.startLooks(now, step)
	return fmt.Sprintf("sequential looks every %s", m.e.spec.Analysis.Sequential.LookInterval)
}

// restart: the next begin starts the step's looks afresh.
func (m *looks) restart() {}

func (m *looks) analyze(ctx context.Context) (Phase, string) { return m.handleLook(ctx) }

// startLooks is called when a step's split is set: looking starts at once (the tests need no
// warm-up; the step's warmup and interval are not used by the statistics, the interval paces the
// recorded intervals and progress lines).
func (m *looks) startLooks(now time.Time, step StepSpec) {
	e := m.e
	m.seq.cursor, m.seq.lastRecord = now, now
	m.seq.nextExpand = now.Add(step.Duration)
	m.seq.looks, m.seq.canary, m.seq.baseline, m.seq.extended = 0, 0, 0, false
	if m.seq.a != nil {
		m.seq.a.NewStep() // a step's Pass is earned at its own split; Fail evidence carries on
	}
	if j := m.seq.routes.judge; j != nil {
		j.NewStep()
	}
	m.seq.cohorts = cohortTallies{control: e.spec.ControlCohort()}
	m.seq.ingest = providers.Ingest{}
	m.seq.leftOut, m.seq.leftOutEntries, m.seq.lossyPrev = 0, 0, false
	e.mu.Lock()
	e.st.NextAnalysisAt = now.Add(e.spec.Analysis.Sequential.LookInterval)
	e.mu.Unlock()
}

// batchOf turns the gateway's requests into the analyzer's batch. Requests routed by a rule are not a
// random sample and stay out; a 5xx or no answer (502) is a failure. The control cohort (baseline,
// or stable with analysis.control stable) is the analyzer's Baseline side; with a stable control
// the guard's "stable" part is empty (stable is already the control). The analyzer pairs canary and
// control requests within time slots, whatever their numbers (stable serves many times the canary's
// requests), so nothing piles up unpaired.
func batchOf(reqs []providers.Request, control providers.Cohort) sequential.Batch {
	// Sized first: appending a look's samples through every size of a growing slice was a twentieth
	// of the simulator's CPU.
	nc, nb := 0, 0
	for i := range reqs {
		switch c := reqs[i].Cohort; {
		case reqs[i].ByRule:
		case c == providers.Canary:
			nc++
		case c == control:
			nb++
		}
	}
	var b sequential.Batch
	if nc > 0 {
		b.Canary = make([]sequential.Sample, 0, nc)
	}
	if nb > 0 {
		b.Baseline = make([]sequential.Sample, 0, nb)
	}
	for _, r := range reqs {
		if r.ByRule {
			continue
		}
		failed := r.Status >= 500
		s := sequential.Sample{LatencyMS: float64(r.Latency) / float64(time.Millisecond), Failed: failed, At: r.Time, Instance: r.Instance, Client: r.Client}
		switch r.Cohort {
		case providers.Canary:
			b.Canary = append(b.Canary, s)
		case control:
			b.Baseline = append(b.Baseline, s)
		case providers.Stable:
			b.StableRequests++
			if failed {
				b.StableErrors++
			}
		}
	}
	return b
}

// handleLook is Analyzing in mode sequential: one look per LookInterval.
func (m *looks) handleLook(ctx context.Context) (Phase, string) {
	e := m.e
	st := e.State()
	step := e.spec.Steps[st.Step]
	q := e.spec.Analysis.Sequential
	now := e.now()
	if now.Before(st.NextAnalysisAt) {
		e.wake = st.NextAnalysisAt
		return Analyzing, ""
	}
	where := fmt.Sprintf("step %d/%d (%s)", st.Step+1, st.Steps, providers.PercentText(step.Weight))
	if m.seq.a == nil {
		a, err := sequential.New(e.spec.sequentialConfig())
		if err != nil {
			return RollingBack, where + ": " + err.Error()
		}
		m.seq.a = a
	}
	if m.seq.cursor.IsZero() || m.seq.cursor.Before(st.StepStartedAt) {
		m.startLooks(st.StepStartedAt, step)
	}
	until := now.Add(-e.spec.requestLag())
	if until.Before(m.seq.cursor) {
		until = m.seq.cursor
	}
	var reqs []providers.Request
	err := e.call(ctx, func(c context.Context) (err error) {
		reqs, err = e.cfg.Requests.Requests(c, m.seq.cursor, until)
		return err
	})
	if err != nil {
		return m.lookError(st, step, now, where, err)
	}
	from := m.seq.cursor
	m.seq.cursor = until
	// What the request log lost or refused during the step so far (one range, so that nothing is
	// counted twice): entries dropped since the last look make this look's window incomplete (they
	// arrived after the last look read up to its cursor, so they belong here or later).
	dropped := m.droppedSince(ctx, st.StepStartedAt, until)
	v := sequential.NeedMoreData
	// the look after one that lost entries is left out too: a dropped post held entries of up to
	// the flush delay after the earlier look's cursor
	lossy := dropped > 0 || m.seq.lossyPrev
	m.seq.lossyPrev = dropped > 0
	routeFail := ""
	if !lossy { // a look missing entries the receiver dropped is left out: the loss could skew it
		if v, routeFail, err = m.observe(reqs, until); err != nil {
			return RollingBack, where + ": " + err.Error()
		}
	}
	m.seq.looks++
	e.mu.Lock()
	e.st.ConsecutiveErrors = 0
	e.st.NextAnalysisAt = now.Add(q.LookInterval)
	e.mu.Unlock()
	e.wake = now.Add(q.LookInterval)

	elapsed := now.Sub(st.StepStartedAt)
	last := st.Step+1 >= st.Steps
	where = fmt.Sprintf("%s look %d after %s", where, m.seq.looks, elapsed.Round(100*time.Millisecond))
	switch {
	case v == sequential.Fail:
		rep := m.record(st, now, VerdictFail, true, "")
		return RollingBack, fmt.Sprintf("%s: %s: %s", where, rep.Reason, decisionReasons(rep, sequential.Fail))
	case routeFail != "": // one route is worse (analysis.routes): the reason names it
		reason := m.seq.routes.judge.FailReason(routeFail)
		m.seq.routes.reason = reason
		m.record(st, now, VerdictFail, true, "")
		return RollingBack, fmt.Sprintf("%s: %s", where, reason)
	case v == sequential.Pass && elapsed >= min(q.MinBake, step.Duration):
		rep := m.record(st, now, VerdictPass, true, "")
		return e.stepPassed(fmt.Sprintf("%s: step passed: %s", where, rep.Reason))
	case !last && !now.Before(m.seq.nextExpand):
		// Asked again every ExpandCheckEvery, or every interval of a shorter step: a policy check that
		// the tests' error guarantees do not depend on, so a short step is not held 10 s for it.
		m.seq.nextExpand = now.Add(min(sequential.ExpandCheckEvery, step.Interval))
		if v == sequential.NeedMoreData {
			if phase, reason, ok := m.moveOn(st, step, now, where, elapsed); ok {
				return phase, reason
			}
		}
	}
	if elapsed >= q.MaxBake {
		rep := m.record(st, now, verdictOf(v), true, fmt.Sprintf("; paused at maxBake %s", q.MaxBake))
		reason := fmt.Sprintf("%s: still undecided at maxBake %s (never failed for lack of data): %s%s; run canaryctl promote %s to accept the step or canaryctl abort %s",
			where, q.MaxBake, rep.Reason, m.needAtRate(elapsed), st.Service, st.Service)
		e.setPause(PauseNeedMoreData, reason)
		return Paused, reason
	}
	if elapsed >= step.Duration && !m.seq.extended {
		if reason, short := m.notEnoughTraffic(st, elapsed); short {
			m.record(st, now, verdictOf(v), true, "; "+reason)
			reason = fmt.Sprintf("%s: %s; run canaryctl promote %s to accept the step or canaryctl abort %s",
				where, reason, st.Service, st.Service)
			e.setPause(PauseNeedMoreData, reason)
			return Paused, reason
		}
		m.seq.extended = true
		rep := m.record(st, now, verdictOf(v), false, fmt.Sprintf("; step extended beyond its %s, up to maxBake %s%s", step.Duration, q.MaxBake, m.needAtRate(elapsed)))
		e.log.Info("step extended", "step", st.Step+1, "maxBake", q.MaxBake, "moreRequests", rep.MoreRequests)
		return Analyzing, ""
	}
	if lossy {
		m.seq.leftOut++
		m.seq.leftOutEntries += dropped
		e.log.Warn("look left out: the request log dropped entries", "step", st.Step+1, "from", from, "until", until, "dropped", dropped)
	}
	m.recordEvery(st, step, now, v)
	return Analyzing, ""
}

// droppedSince is how many entries the request log dropped since the last look (0 for a source
// that drops none), keeping the step's ingest totals; what it lost or refused during the step so
// far is one range, so that nothing is counted twice.
func (m *looks) droppedSince(ctx context.Context, stepStart, until time.Time) int {
	in := m.e.ingest(ctx, stepStart, until)
	if in == nil {
		return 0
	}
	dropped := max(in.DroppedEntries-m.seq.ingest.DroppedEntries, 0)
	m.seq.ingest.DroppedEntries = max(m.seq.ingest.DroppedEntries, in.DroppedEntries)
	m.seq.ingest.RejectedPosts = max(m.seq.ingest.RejectedPosts, in.RejectedPosts)
	m.seq.ingest.StaleEntries = max(m.seq.ingest.StaleEntries, in.StaleEntries)
	return dropped
}

// observe feeds one look's requests to the service's analyzer and, with analysis.routes, to the
// route judge: the service's verdict and the failing route ("" when none).
func (m *looks) observe(reqs []providers.Request, until time.Time) (sequential.Verdict, string, error) {
	if err := m.decideRoutes(reqs); err != nil {
		return sequential.NeedMoreData, "", err
	}
	b := batchOf(reqs, m.e.spec.ControlCohort())
	m.seq.cohorts.observe(b)
	m.seq.canary += len(b.Canary)
	m.seq.baseline += len(b.Baseline)
	b.Until = until
	v := m.seq.a.Observe(b)
	j := m.seq.routes.judge
	if j == nil {
		return v, "", nil
	}
	routeFail, err := j.Observe(reqs, until)
	return v, routeFail, err
}

// moveOn decides whether an undecided step that is not the last moves on to the larger step: the
// data exclude ExpandFactor times every margin, or the step's duration is over and the cohorts are
// sticky (only more clients, not more requests from these, can decide).
func (m *looks) moveOn(st State, step StepSpec, now time.Time, where string, elapsed time.Duration) (Phase, string, bool) {
	e, q := m.e, m.e.spec.Analysis.Sequential
	if m.seq.a.SafeToExpand(q.ExpandFactor) {
		rep := m.record(st, now, VerdictNeedMoreData, true, fmt.Sprintf("; the data exclude %g times every margin: moving on", q.ExpandFactor))
		phase, reason := e.stepPassed(fmt.Sprintf("%s: undecided after the step's %s, but the data exclude %g times every margin; moving on to the larger step: %s",
			where, step.Duration, q.ExpandFactor, rep.Reason))
		return phase, reason, true
	}
	if elapsed >= step.Duration && m.seq.a.FewClients() {
		rep := m.record(st, now, VerdictNeedMoreData, true, "; sticky cohorts: only more clients can decide: moving on")
		phase, reason := e.stepPassed(fmt.Sprintf("%s: undecided after the step's %s; the cohorts are sticky, so only more clients, not more requests from these, can decide, and no Fail test is past half its threshold: moving on to the larger step: %s",
			where, step.Duration, rep.Reason))
		return phase, reason, true
	}
	return "", "", false
}

// recordEvery records the look once per step interval, saying how many looks were left out since
// the last record for entries the receiver dropped.
func (m *looks) recordEvery(st State, step StepSpec, now time.Time, v sequential.Verdict) {
	if now.Before(m.seq.lastRecord.Add(step.Interval)) {
		return
	}
	note := ""
	if m.seq.leftOut > 0 {
		note = fmt.Sprintf("; %d %s since the last record were not used: %d entries dropped by the receiver (overloaded or full)",
			m.seq.leftOut, plural(m.seq.leftOut, "look", "looks"), m.seq.leftOutEntries)
		m.seq.leftOut, m.seq.leftOutEntries = 0, 0
	}
	m.record(st, now, verdictOf(v), false, note)
}

// shortfallFactor: the last step pauses early for lack of traffic only when the projected time to
// settle it is this many times what is left before maxBake. The projection (MorePairs) is a rough
// guide, so a step that is merely slow is extended as before; one that would need hours is not.
const shortfallFactor = 4

// notEnoughTraffic decides, when an undecided step reaches its duration, whether to pause now: only
// the last step (one that is not may still move on through SafeToExpand, and is extended saying what
// it waits for, up to maxBake), only when the requests the tests still need would take
// shortfallFactor times longer than what is left, and only when no regression may be building up
// (every Fail test below a quarter of its threshold, in log terms, and the canary not failing more
// often than the control): then the rollout pauses with the numbers instead of waiting for maxBake.
func (m *looks) notEnoughTraffic(st State, elapsed time.Duration) (string, bool) {
	e := m.e
	q := e.spec.Analysis.Sequential
	a := m.seq.a
	if st.Step+1 < st.Steps {
		// a step that is not the last may still move on (SafeToExpand, asked every interval) before
		// maxBake, where it pauses with the numbers if it could not
		return "", false
	}
	if a.FailEvidence() >= 0.25 || a.ErrorExcess() {
		return "", false // a regression may be building up: keep watching up to maxBake
	}
	rep := a.Report()
	secs := elapsed.Seconds()
	pairRate := float64(rep.CanaryRequests) / secs
	left := q.MaxBake - elapsed
	rates := fmt.Sprintf("%.2f canary and %.2f %s requests/s, %.2f of them paired per second", float64(m.seq.canary)/secs,
		float64(m.seq.baseline)/secs, e.controlLabel(), pairRate)
	switch {
	case rep.MoreRequests < 0:
		return fmt.Sprintf("not enough traffic for this step: the tests cannot settle at %s; maxBake %s would not change that", rates, q.MaxBake), true
	case rep.MoreRequests == 0:
		return "", false
	case pairRate <= 0:
		return fmt.Sprintf("not enough traffic for this step: needs about %d more requests per cohort, and no request pair in %s (%s)",
			rep.MoreRequests, elapsed.Round(time.Second), rates), true
	}
	need := time.Duration(float64(rep.MoreRequests) / pairRate * float64(time.Second))
	if need <= shortfallFactor*left {
		return "", false
	}
	return fmt.Sprintf("not enough traffic for this step: needs about %d more requests per cohort ≈ %s at the current rate (%s), more than the %s left before maxBake %s",
		rep.MoreRequests, need.Round(time.Second), rates, left.Round(time.Second), q.MaxBake), true
}

// needAtRate says how long the requests the tests still need take at the step's pairing rate so
// far ("" when unknown), so that an extended step says what it waits for.
func (m *looks) needAtRate(elapsed time.Duration) string {
	rep := m.seq.a.Report()
	if rep.MoreRequests <= 0 || elapsed <= 0 || rep.CanaryRequests == 0 {
		return ""
	}
	rate := float64(rep.CanaryRequests) / elapsed.Seconds()
	need := time.Duration(float64(rep.MoreRequests) / rate * float64(time.Second))
	return fmt.Sprintf(" (not enough traffic yet: about %d more requests per cohort ≈ %s at the current %.2f request pairs/s)",
		rep.MoreRequests, need.Round(time.Second), rate)
}

func verdictOf(v sequential.Verdict) Verdict {
	switch v {
	case sequential.Fail:
		return VerdictFail
	case sequential.Pass:
		return VerdictPass
	}
	return VerdictNeedMoreData
}

// lookError counts a failed fetch; the next look retries the same window (nothing is lost) after a
// backoff that doubles from LookInterval up to the step's interval.
func (m *looks) lookError(st State, step StepSpec, now time.Time, where string, err error) (Phase, string) {
	e := m.e
	iv := Interval{Step: st.Step, Index: e.stepIntervals(st) + 1, At: now, Start: m.seq.cursor, End: now, Split: st.Split,
		Score: Number(math.NaN()), Verdict: VerdictError, Error: fmt.Sprintf("read requests: %v", err), Control: e.spec.intervalControl()}
	e.mu.Lock()
	e.st.Intervals = append(e.st.Intervals, iv)
	e.st.ConsecutiveErrors++
	errs := e.st.ConsecutiveErrors
	wait := e.spec.Analysis.Sequential.LookInterval
	for i := 1; i < errs && wait < step.Interval; i++ {
		wait *= 2
	}
	e.st.NextAnalysisAt = now.Add(min(wait, step.Interval))
	e.mu.Unlock()
	e.emit(&Event{Type: EvError, Reason: iv.Error})
	e.progress(st, iv)
	e.emit(&Event{Type: EvInterval, Interval: &iv})
	if limit := e.spec.Analysis.ConsecutiveErrorLimit; errs >= limit {
		return RollingBack, fmt.Sprintf("%s: %d consecutive errors (limit %d): %s", where, errs, limit, iv.Error)
	}
	e.wake = now.Add(min(wait, step.Interval))
	if err := e.save(); err != nil {
		return RollingBack, where + ": " + err.Error()
	}
	return Analyzing, ""
}

func (e *Engine) stepIntervals(st State) int {
	n := 0
	for _, iv := range st.Intervals {
		if iv.Step == st.Step && !iv.At.Before(st.StepStartedAt) {
			n++
		}
	}
	return n
}

// record adds an interval with the analyzer's explanation to the state, prints the progress line,
// emits the event and saves the state.
func (m *looks) record(st State, now time.Time, v Verdict, final bool, note string) sequential.Report {
	e := m.e
	rep := e.controlWords(m.seq.a.Report())
	m.seq.lastRecord = now
	if in := m.seq.ingestSoFar(); in != nil && !strings.Contains(note, in.String()) {
		note += ingestNote(in) // what the request log lost or refused during the step says so
	}
	iv := Interval{Step: st.Step, Index: e.stepIntervals(st) + 1, At: now, Start: st.StepStartedAt, End: now,
		Split: st.Split, Baseline: m.seq.baseline, Canary: m.seq.canary, Score: Number(math.NaN()), Verdict: v,
		Final: final, Metrics: decisionMetrics(rep), Reason: rep.Reason + note, Sequential: &rep,
		Cohorts: m.seq.cohorts.stats(), Control: e.spec.intervalControl(), Ingest: m.seq.ingestSoFar()}
	if j := m.seq.routes.judge; j != nil {
		iv.Routes = j.Results()
	}
	if r := m.seq.routes.reason; r != "" { // a route failed: its sentence, then the service's
		iv.Reason = r + "; the service as a whole: " + iv.Reason
	}
	e.mu.Lock()
	e.st.Intervals = append(e.st.Intervals, iv)
	e.st.Verdict = v
	e.mu.Unlock()
	m.seqProgress(st, iv)
	e.emit(&Event{Type: EvInterval, Interval: &iv})
	if err := e.save(); err != nil {
		e.log.Error("save state", "err", err)
	}
	return rep
}

// controlWords names stable, not baseline, in the analyzer's sentences when stable is the control
// (analysis.control stable): the analyzer calls its control side "baseline", and the guard's
// "baseline plus stable" is stable alone then.
func (e *Engine) controlWords(rep sequential.Report) sequential.Report {
	if e.spec.HasBaseline() {
		return rep
	}
	r := strings.NewReplacer("baseline+stable", "stable", "baseline plus stable", "stable", "baseline", "stable")
	rep.Reason = r.Replace(rep.Reason)
	rep.Decisions = slices.Clone(rep.Decisions)
	for i := range rep.Decisions {
		rep.Decisions[i].Reason = r.Replace(rep.Decisions[i].Reason)
		rep.Decisions[i].Compared = r.Replace(rep.Decisions[i].Compared)
	}
	return rep
}

// decisionMetrics shows each test's decision as a metric result (the TUI's metrics table): the
// values of the cohorts in %, the sample sizes, the effect and its confidence-sequence interval in
// percentage points (the guard: rate ratio, lower bound only) and the sentence.
func decisionMetrics(rep sequential.Report) []MetricResult {
	out := make([]MetricResult, 0, len(rep.Decisions))
	for _, d := range rep.Decisions {
		class := "Pass"
		switch {
		case d.Verdict == sequential.Fail:
			class = "High"
		case d.Verdict == sequential.NeedMoreData && d.Metric != sequential.MetricGuard && d.Metric != sequential.MetricFast:
			class = "Undecided"
		}
		ratio := math.NaN()
		if d.BaselineValue > 0 {
			ratio = d.CanaryValue / d.BaselineValue
		}
		lo, est := Number(d.Lower), Number(d.Effect)
		mr := MetricResult{Name: d.Metric, Group: d.Metric, Classification: class, Critical: d.Metric == sequential.MetricGuard || d.Metric == sequential.MetricFast,
			Reason: d.Reason, BaselineMean: Number(d.BaselineValue), CanaryMean: Number(d.CanaryValue),
			BaselineCount: int(d.Baseline), CanaryCount: int(d.Canary), Ratio: Number(ratio), Estimate: &est,
			Unit: d.Unit, EffectUnit: d.EffectUnit}
		if d.Upper != nil {
			hi := Number(*d.Upper)
			mr.CILower, mr.CIUpper = &lo, &hi
		}
		out = append(out, mr)
	}
	return out
}

func decisionReasons(rep sequential.Report, v sequential.Verdict) string {
	var parts []string
	for _, d := range rep.Decisions {
		if d.Verdict == v {
			parts = append(parts, d.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

// seqProgress prints the progress line of a recorded interval.
func (m *looks) seqProgress(st State, iv Interval) {
	e := m.e
	if e.cfg.Progress == nil {
		return
	}
	line := fmt.Sprintf("%s step %d/%d %s | interval %d | look %d, %s into the step | requests this step %s %d canary %d | %s | %s",
		st.Service, st.Step+1, st.Steps, e.splitText(st.Split), iv.Index, m.seq.looks, iv.At.Sub(st.StepStartedAt).Round(100*time.Millisecond),
		e.controlLabel(), iv.Baseline, iv.Canary, iv.Verdict, iv.Reason)
	if iv.Verdict == VerdictFail && iv.Sequential != nil {
		line += " | " + decisionReasons(*iv.Sequential, sequential.Fail)
	}
	fmt.Fprintln(e.cfg.Progress, OneLine(line))
}

// errNoRequestLog: mode sequential without a request log.
var errNoRequestLog = errors.New("analysis.mode sequential needs a request log (Config.Requests)")

// ingestSoFar is what the request log lost or refused during the step's looks, or nil.
func (s *seqState) ingestSoFar() *providers.Ingest {
	if s.ingest.Zero() {
		return nil
	}
	in := s.ingest
	return &in
}
