package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/analysis"
	"github.com/canaryctl/canaryctl/judge"
	"github.com/canaryctl/canaryctl/providers"
)

// intervals is analysis.mode kayenta: every interval of a step, each metric's canary and control
// series over a window (src) are judged by the Kayenta judge; a failing interval rolls back at once
// and the step's final interval decides the step.
type intervals struct {
	e   *Engine
	src intervalSource
}

// intervalSource is where a Kayenta interval's series come from.
type intervalSource interface {
	// lookback bounds the judged window (0: the whole step after its warm-up).
	lookback(step StepSpec) time.Duration
	// controlWindow is the control's own window (Interval.ControlWindow), or nil when the control
	// is observed over the canary's window.
	controlWindow() *TimeWindow
	// pair fetches one metric's series of the control and the canary.
	pair(ctx context.Context, def providers.Metric, w providers.Window) (providers.Pair, error)
	// count fills the interval's per-cohort request counts (progress lines, the TUI).
	count(ctx context.Context, iv *Interval, w providers.Window, pairs []MetricPair)
}

func (m *intervals) check(Config) error { return nil }

func (m *intervals) prepare(context.Context, State, StepSpec) (bool, Phase, string) {
	return true, "", ""
}

func (m *intervals) begin(_ time.Time, _ State, step StepSpec) string {
	return fmt.Sprintf("warm-up %s", step.Warmup)
}

func (m *intervals) restart() {}

// analyze judges the interval that ends now, if it is due.
func (m *intervals) analyze(ctx context.Context) (Phase, string) {
	e := m.e
	st := e.State()
	step := e.spec.Steps[st.Step]
	now := e.now()
	if now.Before(st.NextAnalysisAt) {
		e.wake = st.NextAnalysisAt
		return Analyzing, ""
	}
	stepEnd := st.StepStartedAt.Add(step.Duration)
	final := !now.Before(stepEnd)
	iv := m.interval(ctx, st, step, now, final)
	e.mu.Lock()
	e.st.Intervals = append(e.st.Intervals, iv)
	next := st.NextAnalysisAt.Add(step.Interval)
	if next.Before(now) {
		next = now.Add(step.Interval)
	}
	if next.After(stepEnd) && now.Before(stepEnd) {
		next = stepEnd
	}
	e.st.NextAnalysisAt = next
	switch iv.Verdict {
	case VerdictError:
		e.st.ConsecutiveErrors++
	case VerdictNeedMoreData: // not judged: neither an error nor a score
	default:
		e.st.ConsecutiveErrors = 0
		score := iv.Score
		e.st.Score = &score
		e.st.Verdict = iv.Verdict
	}
	errs := e.st.ConsecutiveErrors
	e.mu.Unlock()
	e.progress(st, iv)
	e.emit(&Event{Type: EvInterval, Interval: &iv})
	return m.decide(st, step, iv, errs, final, next)
}

// decide is what an interval's verdict does to the rollout; next is when the step's next interval is due.
func (m *intervals) decide(st State, step StepSpec, iv Interval, errs int, final bool, next time.Time) (Phase, string) {
	e := m.e
	where := fmt.Sprintf("step %d/%d (%s) interval %d", st.Step+1, st.Steps, providers.PercentText(step.Weight), iv.Index)
	if iv.Verdict == VerdictError {
		limit := e.spec.Analysis.ConsecutiveErrorLimit
		if errs >= limit {
			return RollingBack, fmt.Sprintf("%s: %d consecutive errors (limit %d): %s", where, errs, limit, iv.Error)
		}
		e.wake = next
		if err := e.save(); err != nil {
			return RollingBack, where + ": " + err.Error()
		}
		return Analyzing, ""
	}
	if iv.Verdict == VerdictNeedMoreData && final && droppedIn(iv) {
		reason := fmt.Sprintf("%s: the step's final window is incomplete (%s); run canaryctl promote %s to accept the step or canaryctl abort %s",
			where, iv.Ingest, st.Service, st.Service)
		e.setPause(PauseNeedMoreData, reason)
		return Paused, reason
	}
	if iv.Verdict == VerdictNeedMoreData && final {
		// too few points for Mann-Whitney to reject anything: no evidence, not a pass
		reason := fmt.Sprintf("%s: not enough data for this step: %s; run canaryctl promote %s to accept the step or canaryctl abort %s",
			where, iv.Reason, st.Service, st.Service)
		e.setPause(PauseNeedMoreData, reason)
		return Paused, reason
	}
	if iv.Verdict == VerdictNeedMoreData {
		e.wake = next
		if err := e.save(); err != nil {
			return RollingBack, where + ": " + err.Error()
		}
		return Analyzing, ""
	}
	th := e.spec.Analysis.Thresholds
	if iv.Verdict == VerdictFail {
		return RollingBack, fmt.Sprintf("%s: score %s <= marginal %s: %s", where, fmtScore(float64(iv.Score)), fmtScore(th.Marginal), failReasons(iv.Metrics))
	}
	if !final {
		e.wake = next
		if err := e.save(); err != nil {
			return RollingBack, where + ": " + err.Error()
		}
		return Analyzing, ""
	}
	if iv.Verdict == VerdictMarginal {
		reason := fmt.Sprintf("%s: final score %s is marginal (pass needs %s): %s", where, fmtScore(float64(iv.Score)), fmtScore(th.Pass), failReasons(iv.Metrics))
		if e.spec.OnMarginal == "rollback" {
			return RollingBack, reason
		}
		reason += fmt.Sprintf("; run canaryctl promote %s to go on or canaryctl abort %s", st.Service, st.Service)
		e.setPause(PauseMarginal, reason)
		return Paused, reason
	}
	return e.stepPassed(fmt.Sprintf("%s: step passed with score %s", where, fmtScore(float64(iv.Score))))
}

// interval fetches every metric for the window ending now and judges it.
func (m *intervals) interval(ctx context.Context, st State, step StepSpec, now time.Time, final bool) Interval {
	e := m.e
	start := st.StepStartedAt.Add(step.Warmup)
	if lookback := m.src.lookback(step); lookback > 0 && now.Add(-lookback).After(start) {
		start = now.Add(-lookback)
	}
	index := 1
	for _, iv := range st.Intervals {
		if iv.Step == st.Step && iv.At.After(st.StepStartedAt) || iv.Step == st.Step && iv.At.Equal(st.StepStartedAt) {
			index++
		}
	}
	iv := Interval{Step: st.Step, Index: index, At: now, Start: start, End: now, Split: st.Split, Final: final,
		Score: Number(math.NaN()), Verdict: VerdictError, Control: e.spec.intervalControl(), ControlWindow: m.src.controlWindow()}
	w := providers.Window{Start: start, End: now, Step: e.spec.Analysis.Resolution}
	pairs, err := m.fetch(ctx, w)
	if err != nil {
		iv.Error = err.Error()
		e.emit(&Event{Type: EvError, Reason: iv.Error})
		return iv
	}
	m.src.count(ctx, &iv, w, pairs)
	if iv.Ingest = e.ingest(ctx, start, now); droppedIn(iv) {
		// a window missing entries the receiver dropped is not judged: the loss could skew it
		iv.Verdict, iv.Reason = VerdictNeedMoreData, "not judged: the request log is incomplete"+ingestNote(iv.Ingest)
		return iv
	}
	if why := tooFewPoints(pairs, e.controlLabel()); why != "" {
		// Too few points for Mann-Whitney to reject anything: Kayenta's interval collapses onto the
		// range of the values and would pass (or fail) on noise. Wait for the next interval; at the
		// step's final interval the step pauses (handleAnalyzing). A cohort without any point is
		// left to Kayenta's own no-data rules (mustHaveData).
		iv.Verdict, iv.Reason = VerdictNeedMoreData, why
		return iv
	}
	j, err := e.judge(ctx, pairs)
	if err != nil {
		iv.Error = fmt.Sprintf("judge: %v", err)
		e.emit(&Event{Type: EvError, Reason: iv.Error})
		return iv
	}
	iv.Score = Number(j.Score)
	iv.Metrics = j.Metrics
	iv.Verdict = VerdictFor(j.Score, e.spec.Analysis.Thresholds)
	if note := ingestNote(iv.Ingest); note != "" && iv.Reason == "" {
		iv.Reason = strings.TrimPrefix(note, "; ")
	} else {
		iv.Reason += note
	}
	return iv
}

// fetch fetches every metric's pair over w; no data is an empty pair (the judge's no-data rules apply).
func (m *intervals) fetch(ctx context.Context, w providers.Window) ([]MetricPair, error) {
	metrics := m.e.spec.Analysis.Metrics
	pairs := make([]MetricPair, 0, len(metrics))
	for _, ms := range metrics {
		def := providers.Metric{Name: ms.Name, Kind: ms.Kind, Quantile: ms.Quantile, Query: ms.Query}
		p, err := m.src.pair(ctx, def, w)
		if errors.Is(err, providers.ErrNoData) {
			p, err = providers.Pair{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", ms.Name, err)
		}
		pairs = append(pairs, MetricPair{Metric: ms, Pair: p})
	}
	return pairs, nil
}

// concurrent is the source of analysis.mode kayenta: canary and control served side by side, both
// observed over the same window.
type concurrent struct{ e *Engine }

func (c concurrent) lookback(step StepSpec) time.Duration { return step.Lookback }

func (c concurrent) controlWindow() *TimeWindow { return nil }

func (c concurrent) pair(ctx context.Context, def providers.Metric, w providers.Window) (p providers.Pair, err error) {
	err = c.e.call(ctx, func(cc context.Context) (err error) { p, err = c.e.cfg.Metrics.Pair(cc, def, w); return err })
	return p, err
}

func (c concurrent) count(ctx context.Context, iv *Interval, w providers.Window, pairs []MetricPair) {
	e := c.e
	if cs, ok := e.cfg.Metrics.(CohortSummarizer); ok {
		var cohorts map[providers.Cohort]CohortStats
		err := e.call(ctx, func(cc context.Context) (err error) { cohorts, err = cs.Cohorts(cc, w); return err })
		e.setCohorts(iv, cohorts, err)
		return
	}
	if sc, ok := e.cfg.Metrics.(SampleCounter); ok {
		err := e.call(ctx, func(cc context.Context) (err error) { iv.Baseline, iv.Canary, err = sc.Samples(cc, w); return err })
		if err != nil {
			e.log.Warn("count samples", "err", err)
		}
		return
	}
	countPoints(iv, pairs)
}

// setCohorts records the cohorts' summaries (and their request counts) in the interval.
func (e *Engine) setCohorts(iv *Interval, cohorts map[providers.Cohort]CohortStats, err error) {
	if err != nil {
		e.log.Warn("summarize cohorts", "err", err)
	}
	iv.Cohorts = cohorts
	iv.Baseline, iv.Canary = cohorts[e.spec.ControlCohort()].Requests, cohorts[providers.Canary].Requests
}

// countPoints counts the points of the first metric when the source cannot count requests.
func countPoints(iv *Interval, pairs []MetricPair) {
	if len(pairs) > 0 {
		iv.Baseline, iv.Canary = points(pairs[0].Pair.Baseline), points(pairs[0].Pair.Canary)
	}
}

func (e *Engine) judge(ctx context.Context, pairs []MetricPair) (j Judgement, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return e.cfg.Judge.Judge(ctx, pairs)
}

// tooFewPoints names a metric whose cohorts both have points, but too few for the exact
// Mann-Whitney test to be significant at the judge's level whatever the values, or "".
func tooFewPoints(pairs []MetricPair, control string) string {
	alpha := 1 - judge.ConfLevel
	for _, p := range pairs {
		b, c := points(p.Pair.Baseline), points(p.Pair.Canary)
		if b > 0 && c > 0 && !analysis.MannWhitneyCanReject(b, c, alpha) {
			return fmt.Sprintf("not judged: %s has %d %s and %d canary points, too few for Mann-Whitney to reject anything at %g%% confidence (the most extreme data give p = %.3g > %g; 5 and 5 points are enough)",
				p.Metric.Name, b, control, c, 100*judge.ConfLevel, analysis.MannWhitneyMinPValue(b, c), alpha)
		}
	}
	return ""
}

func points(xs []float64) int {
	n := 0
	for _, x := range xs {
		if !math.IsNaN(x) {
			n++
		}
	}
	return n
}

func (e *Engine) progress(st State, iv Interval) {
	if e.cfg.Progress == nil {
		return
	}
	line := fmt.Sprintf("%s step %d/%d %s | interval %d | samples %s %d canary %d | ",
		st.Service, st.Step+1, st.Steps, e.splitText(st.Split), iv.Index, e.controlLabel(), iv.Baseline, iv.Canary)
	switch iv.Verdict {
	case VerdictError:
		line += "error: " + iv.Error
	case VerdictNeedMoreData:
		line += fmt.Sprintf("%s | %s", iv.Verdict, iv.Reason)
	default:
		line += fmt.Sprintf("score %s | %s", fmtScore(float64(iv.Score)), iv.Verdict)
		if iv.Verdict != VerdictPass {
			line += " | " + failReasons(iv.Metrics)
		}
		if iv.Ingest != nil {
			line += " | request log: " + iv.Ingest.String()
		}
	}
	fmt.Fprintln(e.cfg.Progress, OneLine(line))
}
