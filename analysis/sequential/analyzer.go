package sequential

import (
	"fmt"
	"math"
	"strings"
)

// Sample is one request as the analyzer sees it.
type Sample struct {
	LatencyMS float64 `json:"latencyMs"`
	Failed    bool    `json:"failed"` // a 5xx response (or no response)
}

// Batch is what arrived since the last look, per cohort. The analyzer pairs canary and baseline
// requests in arrival order; unpaired ones wait for the next batch.
type Batch struct {
	Canary   []Sample
	Baseline []Sample
	// StableRequests and StableErrors count stable's requests and 5xx in the same period; they join the
	// baseline as the control of the error guard (RatioTest). Zero when stable is not observed.
	StableRequests int64
	StableErrors   int64
}

// Config configures an Analyzer. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Alpha bounds the probability of a Fail verdict over the whole rollout, every look and every metric
	// together, when the canary is no worse than the baseline. Split (Bonferroni) between the tests:
	// 40% to the 5xx guard (unless disabled), the rest equally to 5xx rate, latency median and tail.
	Alpha float64 `json:"alpha"`
	// Beta bounds, for each metric, the probability of a Pass when the canary is worse by the margin.
	Beta float64 `json:"beta"`
	// ErrorMargin is the smallest 5xx-rate increase worth detecting, as a fraction (0.01 = 1 pp).
	ErrorMargin float64 `json:"errorMargin"`
	// MedianMargin is the smallest increase worth detecting in the share of canary requests slower
	// than the baseline's median (0.10: from 50% to 60%; +20 ms on an 80 ms median is about +0.2).
	MedianMargin float64 `json:"medianMargin"`
	// TailQuantile is the latency quantile watched for tail regressions (0.99: P99).
	TailQuantile float64 `json:"tailQuantile"`
	// TailMargin is the smallest increase worth detecting in the share of canary requests slower than
	// the baseline's TailQuantile (0.01: from 1% to 2%; +50% on P99 is about +0.016 with the simulator's
	// heavy-tailed latencies).
	TailMargin float64 `json:"tailMargin"`
	// GuardRatio is the tolerated ratio of the canary's 5xx rate to the control's (baseline plus
	// stable) before the fast guard fails the canary (1.5: a canary failing 50% more often than stable
	// and baseline is not yet a rollback for the guard; the paired 5xx test still judges it).
	GuardRatio float64 `json:"guardRatio"`
	// NoGuard disables the 5xx guard.
	NoGuard bool `json:"noGuard,omitempty"`
	// MinThresholdSamples is how many baseline requests estimate the latency thresholds before the
	// latency tests start.
	MinThresholdSamples int `json:"minThresholdSamples"`
}

// DefaultConfig is the configuration the simulator checks against the acceptance targets.
func DefaultConfig() Config {
	return Config{Alpha: 0.01, Beta: 0.05, ErrorMargin: 0.0075, MedianMargin: 0.10, TailQuantile: 0.99,
		TailMargin: 0.01, GuardRatio: 1.5, MinThresholdSamples: 100}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setIfZero := func(v *float64, def float64) {
		if *v == 0 {
			*v = def
		}
	}
	setIfZero(&c.Alpha, d.Alpha)
	setIfZero(&c.Beta, d.Beta)
	setIfZero(&c.ErrorMargin, d.ErrorMargin)
	setIfZero(&c.MedianMargin, d.MedianMargin)
	setIfZero(&c.TailQuantile, d.TailQuantile)
	setIfZero(&c.TailMargin, d.TailMargin)
	setIfZero(&c.GuardRatio, d.GuardRatio)
	if c.MinThresholdSamples == 0 {
		c.MinThresholdSamples = d.MinThresholdSamples
	}
	return c
}

// Validate checks the fields (after defaults) and says how to fix a wrong one.
func (c Config) Validate() error {
	c = c.withDefaults()
	unit := func(field string, v float64, eg string) error {
		if !(v > 0 && v < 1) {
			return &ConfigError{field, fmt.Sprintf("%v must be between 0 and 1 (exclusive), e.g. %s", v, eg)}
		}
		return nil
	}
	for _, e := range []error{
		unit("alpha", c.Alpha, "0.01"), unit("beta", c.Beta, "0.05"),
		unit("errorMargin", c.ErrorMargin, "0.01 for 1 percentage point"),
		unit("medianMargin", c.MedianMargin, "0.1"), unit("tailQuantile", c.TailQuantile, "0.99"),
		unit("tailMargin", c.TailMargin, "0.01"),
	} {
		if e != nil {
			return e
		}
	}
	if !c.NoGuard && !(c.GuardRatio >= 1 && c.GuardRatio <= 1024) {
		return &ConfigError{"guardRatio", fmt.Sprintf("%v must be between 1 and 1024, e.g. 2", c.GuardRatio)}
	}
	if c.MinThresholdSamples < 10 {
		return &ConfigError{"minThresholdSamples", fmt.Sprintf("%d must be at least 10, e.g. 100", c.MinThresholdSamples)}
	}
	return nil
}

// Metric names in reports.
const (
	MetricErrors = "5xx-rate"
	MetricGuard  = "5xx-guard"
	MetricMedian = "latency-median"
	MetricTail   = "latency-tail"
)

// guardAlphaShare is the share of Alpha given to the 5xx guard; the three paired tests split the rest.
// The guard is the fast path for gross regressions, where every half nat of evidence is a second.
const guardAlphaShare = 0.4

// maxPending bounds the unpaired requests kept per cohort; older ones are dropped (by count, never by
// value, so the tests stay valid).
const maxPending = 100000

// exceedance is a quantile comparison: the paired test and the raw exceedance counts.
type exceedance struct {
	q                      float64
	test                   *PairedTest
	canaryAbove, baseAbove int64
	threshold              float64 // the last threshold used, ms
}

// Analyzer runs the request-level sequential tests of one canary against its baseline. Feed it a
// Batch per look with Observe; read the verdict with Verdict and the explanation with Report.
// Not safe for concurrent use.
type Analyzer struct {
	cfg        Config
	alpha      float64 // per paired test
	guardAlpha float64
	errs       *PairedTest
	guard      *RatioTest
	median     exceedance
	tail       exceedance

	pendC, pendB []Sample
	thr          *Histogram // latencies of paired baseline requests from earlier batches
	hc, hb       *Histogram // latencies of paired requests, for reports

	canaryN, baselineN     int64 // paired requests
	canaryErr, baselineErr int64 // among paired requests
}

// New checks cfg (zero fields take defaults) and returns an analyzer with no data.
func New(cfg Config) (*Analyzer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sequential analyzer: %w", err)
	}
	cfg = cfg.withDefaults()
	a := &Analyzer{cfg: cfg, alpha: cfg.Alpha / 3, thr: NewHistogram(), hc: NewHistogram(), hb: NewHistogram()}
	if !cfg.NoGuard {
		a.guardAlpha = cfg.Alpha * guardAlphaShare
		a.alpha = (cfg.Alpha - a.guardAlpha) / 3
	}
	var err error
	mk := func(margin, prior float64) *PairedTest {
		if err != nil {
			return nil
		}
		var t *PairedTest
		t, err = NewPairedTest(PairedConfig{Alpha: a.alpha, Beta: cfg.Beta, Margin: margin, PriorNonZero: prior})
		return t
	}
	// priors for the sample-size estimate: about two error rates' worth of non-zero 5xx differences,
	// half of the median comparisons, 2(1-q) of the tail comparisons
	a.errs = mk(cfg.ErrorMargin, 2*cfg.ErrorMargin)
	a.median = exceedance{q: 0.5, test: mk(cfg.MedianMargin, 0.5)}
	a.tail = exceedance{q: cfg.TailQuantile, test: mk(cfg.TailMargin, 2*(1-cfg.TailQuantile))}
	if err != nil {
		return nil, fmt.Errorf("sequential analyzer: %w", err)
	}
	if !cfg.NoGuard {
		if a.guard, err = NewRatioTest(RatioConfig{Alpha: a.guardAlpha, Tolerance: cfg.GuardRatio}); err != nil {
			return nil, fmt.Errorf("sequential analyzer: %w", err)
		}
	}
	return a, nil
}

// Config returns the configuration with defaults filled in.
func (a *Analyzer) Config() Config { return a.cfg }

// Observe adds one batch, looks once and returns the verdict.
func (a *Analyzer) Observe(b Batch) Verdict {
	if a.guard != nil {
		ce, be := countFailed(b.Canary), countFailed(b.Baseline)
		a.guard.Add(ce, int64(len(b.Canary)), be+b.StableErrors, int64(len(b.Baseline))+b.StableRequests)
	}
	a.pendC = appendBounded(a.pendC, b.Canary)
	a.pendB = appendBounded(a.pendB, b.Baseline)
	n := min(len(a.pendC), len(a.pendB))
	if n > 0 {
		a.pair(a.pendC[:n], a.pendB[:n])
		a.pendC = a.pendC[:copy(a.pendC, a.pendC[n:])]
		a.pendB = a.pendB[:copy(a.pendB, a.pendB[n:])]
	}
	return a.Verdict()
}

func countFailed(s []Sample) int64 {
	var n int64
	for _, x := range s {
		if x.Failed {
			n++
		}
	}
	return n
}

func appendBounded(dst, src []Sample) []Sample {
	dst = append(dst, src...)
	if over := len(dst) - maxPending; over > 0 {
		dst = dst[:copy(dst, dst[over:])]
	}
	return dst
}

// pair runs the tests on aligned canary and baseline requests. The latency thresholds are fixed from
// earlier batches before any of these requests is looked at, and these baseline requests join the
// threshold estimate only afterwards: the thresholds are predictable, as the tests require.
func (a *Analyzer) pair(c, b []Sample) {
	var ep, ez, em int64
	for i := range c {
		switch {
		case c[i].Failed && !b[i].Failed:
			ep++
		case b[i].Failed && !c[i].Failed:
			em++
		default:
			ez++
		}
		if c[i].Failed {
			a.canaryErr++
		}
		if b[i].Failed {
			a.baselineErr++
		}
	}
	a.errs.Add(ep, ez, em)
	a.canaryN += int64(len(c))
	a.baselineN += int64(len(b))
	if a.thr.N() >= int64(a.cfg.MinThresholdSamples) {
		for _, e := range []*exceedance{&a.median, &a.tail} {
			e.threshold = a.thr.Quantile(e.q)
			var p, z, m int64
			for i := range c {
				ca, ba := c[i].LatencyMS > e.threshold, b[i].LatencyMS > e.threshold
				switch {
				case ca && !ba:
					p++
				case ba && !ca:
					m++
				default:
					z++
				}
				if ca {
					e.canaryAbove++
				}
				if ba {
					e.baseAbove++
				}
			}
			e.test.Add(p, z, m)
		}
	}
	for i := range c {
		a.thr.Add(b[i].LatencyMS)
		a.hb.Add(b[i].LatencyMS)
		a.hc.Add(c[i].LatencyMS)
	}
}

// Verdict combines the tests: Fail if any test failed; Pass if the 5xx-rate, median and tail tests all
// passed; NeedMoreData otherwise.
func (a *Analyzer) Verdict() Verdict {
	if a.errs.Verdict() == Fail || a.median.test.Verdict() == Fail || a.tail.test.Verdict() == Fail ||
		(a.guard != nil && a.guard.Verdict() == Fail) {
		return Fail
	}
	if a.errs.Verdict() == Pass && a.median.test.Verdict() == Pass && a.tail.test.Verdict() == Pass {
		return Pass
	}
	return NeedMoreData
}

// SafeToExpand reports whether no test has failed and every paired test's upper confidence bound (at
// level 1-Beta) is below factor times its margin: the data exclude a regression factor times the
// minimum detectable effect, with error probability at most Beta per test. An engine may use it to move
// an undecided canary to a larger, non-final step, where more traffic settles the test sooner; only
// Pass should promote. factor must be at least 1.
func (a *Analyzer) SafeToExpand(factor float64) bool {
	if a.Verdict() == Fail || !(factor >= 1) {
		return false
	}
	for _, t := range []*PairedTest{a.errs, a.median.test, a.tail.test} {
		if t.Verdict() == Pass {
			continue
		}
		if UpperBound(t.Counts(), t.cfg.Beta) >= factor*t.cfg.Margin {
			return false
		}
	}
	return true
}

// Decision explains one test's verdict in numbers and in words. Differences, intervals and thresholds
// of the paired tests are in percentage points of a share; the guard's are rate ratios.
type Decision struct {
	Metric   string  `json:"metric"`
	Verdict  Verdict `json:"verdict"`
	Compared string  `json:"compared"`
	// Canary and Baseline are the sample sizes (requests) per cohort; for the guard, Baseline counts
	// the whole control (baseline plus stable).
	Canary   int64 `json:"canary"`
	Baseline int64 `json:"baseline"`
	// CanaryValue and BaselineValue are what each cohort showed, in Unit.
	CanaryValue   float64 `json:"canaryValue"`
	BaselineValue float64 `json:"baselineValue"`
	Unit          string  `json:"unit"`
	// Effect is the observed difference (paired tests, pp) or rate ratio (guard); EffectUnit says
	// which ("pp" or "ratio") for Effect, Lower, Upper, Tolerance and Margin.
	Effect     float64 `json:"effect"`
	EffectUnit string  `json:"effectUnit"`
	// Lower (at level LowerLevel) and Upper (at UpperLevel) bound the effect at any stopping time;
	// Upper is absent for the guard, which is one-sided.
	Lower      float64  `json:"lower"`
	Upper      *float64 `json:"upper,omitempty"`
	LowerLevel float64  `json:"lowerLevel"`
	UpperLevel float64  `json:"upperLevel,omitempty"`
	// Tolerance is what Lower must exceed to Fail; Margin what Upper must be below to Pass.
	Tolerance float64 `json:"tolerance"`
	Margin    float64 `json:"margin,omitempty"`
	// EValue is the evidence against "not worse" (Fail at 1/alpha); PassEValue the evidence against
	// "worse by the margin" (Pass at 1/beta).
	EValue     float64 `json:"eValue"`
	PassEValue float64 `json:"passEValue,omitempty"`
	// MorePairs estimates the further requests per cohort an undecided test needs to pass a canary no
	// worse than the baseline (PairedTest.MorePairsToPass: it does not jump when a few pairs move the
	// observed difference across half the margin); -1 if it cannot settle at the observed rates.
	MorePairs int64  `json:"morePairs,omitempty"`
	Reason    string `json:"reason"`
}

// Report is the analyzer's verdict with one Decision per test.
type Report struct {
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason"`
	// CanaryRequests and BaselineRequests are the paired requests per cohort.
	CanaryRequests   int64 `json:"canaryRequests"`
	BaselineRequests int64 `json:"baselineRequests"`
	// MoreRequests, for NeedMoreData, is the largest MorePairs of the undecided tests.
	MoreRequests int64      `json:"moreRequests,omitempty"`
	Decisions    []Decision `json:"decisions"`
}

// Report explains the current verdict. It costs a few bisections per test: call it when a verdict is
// reached or shown, not necessarily on every look.
func (a *Analyzer) Report() Report {
	r := Report{Verdict: a.Verdict(), CanaryRequests: a.canaryN, BaselineRequests: a.baselineN}
	r.Decisions = append(r.Decisions, a.errorDecision())
	if a.guard != nil {
		r.Decisions = append(r.Decisions, a.guardDecision())
	}
	r.Decisions = append(r.Decisions, a.exceedDecision(MetricMedian, &a.median), a.exceedDecision(MetricTail, &a.tail))
	var failed []string
	for _, d := range r.Decisions {
		switch {
		case d.Verdict == Fail:
			failed = append(failed, d.Metric)
		case d.Verdict == Pass: // decided: needs no more data
		case d.Metric != MetricGuard && (d.MorePairs > r.MoreRequests || d.MorePairs < 0) && r.MoreRequests >= 0:
			r.MoreRequests = d.MorePairs
		}
	}
	switch r.Verdict {
	case Fail:
		r.MoreRequests = 0
		r.Reason = fmt.Sprintf("fail: the canary is worse on %s after %d request pairs", strings.Join(failed, ", "), a.canaryN)
	case Pass:
		r.Reason = fmt.Sprintf("pass: the canary is within every margin after %d request pairs", a.canaryN)
	default:
		more := "cannot settle at the observed rates"
		if r.MoreRequests > 0 {
			more = fmt.Sprintf("about %d more requests per cohort to pass a canary no worse than the baseline (the configured minimum detectable effects)", r.MoreRequests)
		}
		r.Reason = fmt.Sprintf("need more data: %d request pairs so far, no regression shown, not yet within every margin; %s", a.canaryN, more)
	}
	return r
}

func pct(num, den int64) float64 {
	if den == 0 {
		return 0
	}
	return 100 * float64(num) / float64(den)
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// pairedDecision fills the fields common to the paired tests.
func (a *Analyzer) pairedDecision(metric string, t *PairedTest) Decision {
	lo, hi := t.Interval()
	hi100 := 100 * hi
	d := Decision{Metric: metric, Verdict: t.Verdict(), Canary: t.Counts().N(), Baseline: t.Counts().N(),
		Effect: 100 * t.Counts().Mean(), EffectUnit: "pp", Lower: 100 * lo, Upper: &hi100, LowerLevel: 1 - a.alpha,
		UpperLevel: 1 - a.cfg.Beta, Tolerance: 100 * t.cfg.Tolerance, Margin: 100 * t.cfg.Margin,
		EValue: finite(t.FailEValue()), PassEValue: finite(t.PassEValue()), MorePairs: t.MorePairsToPass()}
	return d
}

func (d *Decision) explain(what string) {
	level := func(l float64) string { return trimFloat(100*l, 2) + "%" }
	pp := func(v float64) string { return fmt.Sprintf("%+.2f pp", v) }
	head := fmt.Sprintf("%s over %d request pairs: difference %s", what, d.Canary, pp(d.Effect))
	switch d.Verdict {
	case Fail:
		d.Reason = fmt.Sprintf("%s; its %s lower bound %s is above the %s tolerance: fail", head, level(d.LowerLevel), pp(d.Lower), pp(d.Tolerance))
	case Pass:
		d.Reason = fmt.Sprintf("%s; its %s upper bound %s is below the %s margin: pass", head, level(d.UpperLevel), pp(*d.Upper), pp(d.Margin))
	default:
		more := "cannot settle at the observed rates"
		if d.MorePairs > 0 {
			more = fmt.Sprintf("about %d more request pairs to pass", d.MorePairs)
		}
		d.Reason = fmt.Sprintf("%s, interval [%s, %s] neither above the %s tolerance nor below the %s margin: need more data (%s)",
			head, pp(d.Lower), pp(*d.Upper), pp(d.Tolerance), pp(d.Margin), more)
	}
}

func trimFloat(v float64, prec int) string {
	s := fmt.Sprintf("%.*f", prec, v)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func (a *Analyzer) errorDecision() Decision {
	d := a.pairedDecision(MetricErrors, a.errs)
	d.Compared = "5xx share of canary vs baseline requests, paired in arrival order"
	d.Unit = "%"
	d.CanaryValue, d.BaselineValue = pct(a.canaryErr, a.canaryN), pct(a.baselineErr, a.baselineN)
	d.explain(fmt.Sprintf("5xx rate canary %.2f%% (%d/%d) vs baseline %.2f%% (%d/%d)",
		d.CanaryValue, a.canaryErr, a.canaryN, d.BaselineValue, a.baselineErr, a.baselineN))
	return d
}

func (a *Analyzer) exceedDecision(metric string, e *exceedance) Decision {
	d := a.pairedDecision(metric, e.test)
	q := "P" + trimFloat(100*e.q, 2)
	if e.q == 0.5 {
		q = "median"
	}
	d.Compared = fmt.Sprintf("share of canary vs baseline requests slower than the baseline's running %s, paired in arrival order", q)
	d.Unit = "%"
	n := e.test.Counts().N()
	d.CanaryValue, d.BaselineValue = pct(e.canaryAbove, n), pct(e.baseAbove, n)
	if n == 0 {
		d.Reason = fmt.Sprintf("latency %s: waiting for %d baseline requests to estimate the threshold (have %d): need more data",
			q, a.cfg.MinThresholdSamples, a.thr.N())
		return d
	}
	cq, bq := a.hc.Quantile(e.q), a.hb.Quantile(e.q)
	d.explain(fmt.Sprintf("latency %s canary %.1f ms vs baseline %.1f ms (%+.0f%%); requests slower than baseline's %s %.1f ms: canary %.2f%% vs baseline %.2f%%, paired after the first %d baseline requests set the threshold,",
		q, cq, bq, finite(100*(cq/bq-1)), q, e.threshold, d.CanaryValue, d.BaselineValue, a.cfg.MinThresholdSamples))
	return d
}

func (a *Analyzer) guardDecision() Decision {
	g := a.guard
	d := Decision{Metric: MetricGuard, Verdict: g.Verdict(),
		Compared: "5xx rate of canary vs baseline plus stable, as a rate ratio, conditional on each batch's error count",
		Canary:   g.CanaryRequests, Baseline: g.ControlRequests, Unit: "%",
		CanaryValue: pct(g.CanaryErrors, g.CanaryRequests), BaselineValue: pct(g.ControlErrors, g.ControlRequests),
		Effect: finite(g.Ratio()), EffectUnit: "ratio", Lower: g.LowerBound(a.guardAlpha), LowerLevel: 1 - a.guardAlpha, Tolerance: g.Tolerance(),
		EValue: finite(g.EValue())}
	ratio := fmt.Sprintf("rate ratio %.2f", d.Effect)
	if math.IsInf(g.Ratio(), 1) {
		ratio = "rate ratio unbounded (no control errors)"
	}
	head := fmt.Sprintf("5xx guard: canary %.2f%% (%d/%d) vs baseline+stable %.2f%% (%d/%d), %s",
		d.CanaryValue, g.CanaryErrors, g.CanaryRequests, d.BaselineValue, g.ControlErrors, g.ControlRequests, ratio)
	if d.Verdict == Fail {
		d.Reason = fmt.Sprintf("%s; its %s%% lower bound %.2f is above the tolerated ratio %.2f: fail", head, trimFloat(100*d.LowerLevel, 2), d.Lower, d.Tolerance)
	} else {
		d.Reason = fmt.Sprintf("%s; e-value %.3g below %.3g, no gross regression", head, d.EValue, 1/a.guardAlpha)
	}
	return d
}
