package sequential

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Sample is one request as the analyzer sees it.
type Sample struct {
	LatencyMS float64 `json:"latencyMs"`
	Failed    bool    `json:"failed"` // a 5xx response (or no response)
	// At is when the request finished; canary and baseline requests are paired within time slots
	// (slots.go). Zero: the batch is one slot of its own.
	At time.Time `json:"at,omitzero"`
	// Instance names the instance that served it, "" if unknown; with two or more canary instances
	// a Fail needs every one of them to be worse (see Analyzer).
	Instance string `json:"instance,omitempty"`
	// Client names who sent it, "" if unknown: with sticky cohorts (each client on one cohort) the
	// Fails are judged by clients, not requests (clusters.go).
	Client string `json:"client,omitempty"`
}

// Batch is what arrived since the last look, per cohort.
type Batch struct {
	Canary   []Sample
	Baseline []Sample
	// StableRequests and StableErrors count stable's requests and 5xx in the same period, for the
	// guard's comparison with warm stable. Zero when stable is not observed.
	StableRequests int64
	StableErrors   int64
	// Until: every request that finished before it is in this batch or an earlier one, so the time
	// slots ending by then can be paired. Zero: the latest sample's time.
	Until time.Time
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
	// FreshFactor is how many times as often as warm stable freshly deployed instances may fail
	// without being a regression (default 3): the fast test (5xx-fast) tolerates a canary/control
	// ratio of FreshFactor, the guard compares the canary with stable only at a tolerated ratio of
	// GuardRatio × FreshFactor. The guard's comparison with the baseline, deployed at the same time
	// as the canary and as fresh, needs no such allowance.
	FreshFactor float64 `json:"freshFactor"`
	// WarmControl says the Baseline side is warm stable (no baseline deployed): the guard's
	// comparison with it then tolerates GuardRatio × FreshFactor too.
	WarmControl bool `json:"warmControl,omitempty"`
	// FastInstanceEvidence is the e-value every named canary instance must show, against "at most
	// FreshFactor times baseline plus stable's rate" with its evidence capped per block, when the fast
	// test fails (default 1.5): a version regression shows on each instance, one instance's bad moment
	// does not. Only a filter: it removes rejections, the fast test's alpha does not depend on it.
	// (At 3 the 10%-5xx canary at 200 req/s waited a median of 21.6 s instead of 16.2 for every
	// instance's second error; aa-instance-errors had no false rollback in 1,000 either way.)
	FastInstanceEvidence float64 `json:"fastInstanceEvidence"`
	// FastBaselineEvidence is the e-value the canary's comparison with the baseline alone (tolerated
	// ratio 1) must show when the fast test fails (default 10): instances failing more than
	// FreshFactor times as often as stable only because they are fresh, as the baseline is, then roll
	// back with probability at most 1/FastBaselineEvidence.
	FastBaselineEvidence float64 `json:"fastBaselineEvidence"`
	// FastAlternatives are the fast test's two alternatives for the canary's 5xx rate, as offsets on
	// a grid of 4 per doubling of FreshFactor times stable's rate (1 to 40; zero: 8 and 12, i.e. 4 and
	// 8 times). FastBaselineAlternatives are the baseline comparison's, on the same grid of the
	// baseline's rate (zero: 12 and 16, i.e. 8 and 16 times). Any valid offsets keep the tests valid
	// (each alternative's likelihood ratio is an e-process under the null); they only choose which
	// regressions reach the threshold quickest: far alternatives pay off where a slot has few canary
	// requests (a route's), near ones where it has many (the service's).
	FastAlternatives         [2]int `json:"fastAlternatives,omitzero"`
	FastBaselineAlternatives [2]int `json:"fastBaselineAlternatives,omitzero"`
	// FastAlphaShare is the fast test's share of Alpha (zero: 0.4); the guard keeps 0.1 and the three
	// paired tests split the rest, so it must be below 0.9. A Bonferroni split chosen before any
	// evidence: any value keeps the analyzer's false Fails at most Alpha.
	FastAlphaShare float64 `json:"fastAlphaShare,omitzero"`
	// StickyClients says the gateway keeps each client on one cohort (a sticky hash key): the
	// paired tests' Fails are then judged by clients from the start (clusters.go). Without it the
	// analyzer finds out from the samples' Client keys.
	StickyClients bool `json:"stickyClients,omitempty"`
	// NoGuard disables the 5xx guard and the fast 5xx test.
	NoGuard bool `json:"noGuard,omitempty"`
	// SlotRequests is how many requests the quieter cohort should expect per pairing slot; the slot
	// width follows from its rate so far, between MinSlot and MaxSlot (defaults 4, 1s, 30s).
	SlotRequests int           `json:"slotRequests"`
	MinSlot      time.Duration `json:"minSlot"`
	MaxSlot      time.Duration `json:"maxSlot"`
	// Seed seeds the random draws that choose which requests of a slot are paired (default 1).
	Seed uint64 `json:"seed"`
	// BlockLength and BlockCap bound the weight of a burst of dependent requests: within each
	// BlockLength of time every test's evidence (each bet's log-wealth, each alternative's log
	// likelihood ratio) may grow by at most BlockCap nats (defaults 5s and 0.75). One instance's bad
	// moment of 10-20 s then counts as a few blocks, not as thousands of independent requests;
	// a regression that lasts keeps adding evidence block after block.
	BlockLength time.Duration `json:"blockLength"`
	BlockCap    float64       `json:"blockCap"`
	// MinThresholdSamples is how many baseline requests estimate the latency thresholds before the
	// latency tests start.
	MinThresholdSamples int `json:"minThresholdSamples"`
}

// DefaultConfig is the configuration the simulator checks against the acceptance targets.
func DefaultConfig() Config {
	return Config{Alpha: 0.01, Beta: 0.05, ErrorMargin: 0.0075, MedianMargin: 0.10, TailQuantile: 0.99,
		TailMargin: 0.01, GuardRatio: 1.5, FreshFactor: 3, FastInstanceEvidence: 1.5, FastBaselineEvidence: 10, MinThresholdSamples: 100, SlotRequests: 4,
		MinSlot: time.Second, MaxSlot: 30 * time.Second, Seed: 1, BlockLength: 5 * time.Second, BlockCap: 0.75}
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
	setIfZero(&c.FreshFactor, d.FreshFactor)
	setIfZero(&c.FastInstanceEvidence, d.FastInstanceEvidence)
	setIfZero(&c.FastBaselineEvidence, d.FastBaselineEvidence)
	if c.MinThresholdSamples == 0 {
		c.MinThresholdSamples = d.MinThresholdSamples
	}
	if c.SlotRequests == 0 {
		c.SlotRequests = d.SlotRequests
	}
	if c.MinSlot == 0 {
		c.MinSlot = d.MinSlot
	}
	if c.MaxSlot == 0 {
		c.MaxSlot = max(d.MaxSlot, c.MinSlot)
	}
	if c.Seed == 0 {
		c.Seed = d.Seed
	}
	if c.BlockLength == 0 {
		c.BlockLength = d.BlockLength
	}
	setIfZero(&c.BlockCap, d.BlockCap)
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
	if err := c.validateGuard(); err != nil {
		return err
	}
	if c.MinThresholdSamples < 10 {
		return &ConfigError{"minThresholdSamples", fmt.Sprintf("%d must be at least 10, e.g. 100", c.MinThresholdSamples)}
	}
	if c.SlotRequests < 1 || c.SlotRequests > 1000 {
		return &ConfigError{"slotRequests", fmt.Sprintf("%d must be between 1 and 1000, e.g. 4", c.SlotRequests)}
	}
	if c.BlockLength < 0 || !(c.BlockCap > 0) || math.IsInf(c.BlockCap, 0) {
		return &ConfigError{"blockCap", fmt.Sprintf("%v nats per %s block: use a positive cap and block length, e.g. 0.75 per 5s", c.BlockCap, c.BlockLength)}
	}
	if c.MinSlot < time.Millisecond || c.MaxSlot < c.MinSlot || c.MaxSlot > time.Hour {
		return &ConfigError{"maxSlot", fmt.Sprintf("slots of %s..%s: use 1ms <= minSlot <= maxSlot <= 1h, e.g. 1s..30s", c.MinSlot, c.MaxSlot)}
	}
	return nil
}

// validateGuard checks the 5xx guard's and the fast test's fields (unused with NoGuard).
func (c Config) validateGuard() error {
	if c.NoGuard {
		return nil
	}
	if !(c.GuardRatio >= 1 && c.GuardRatio <= 1024) {
		return &ConfigError{"guardRatio", fmt.Sprintf("%v must be between 1 and 1024, e.g. 2", c.GuardRatio)}
	}
	if !(c.FreshFactor >= 1 && c.FreshFactor <= 100) {
		return &ConfigError{"freshFactor", fmt.Sprintf("%v must be between 1 and 100, e.g. 3", c.FreshFactor)}
	}
	if !(c.FastInstanceEvidence >= 1) || math.IsInf(c.FastInstanceEvidence, 0) {
		return &ConfigError{"fastInstanceEvidence", fmt.Sprintf("%v must be an e-value of at least 1, e.g. 10", c.FastInstanceEvidence)}
	}
	if !(c.FastAlphaShare >= 0 && c.FastAlphaShare < 1-guardAlphaShare) {
		return &ConfigError{"fastAlphaShare", fmt.Sprintf("%v must be from 0 (the default, 0.4) to below %v, e.g. 0.4", c.FastAlphaShare, 1-guardAlphaShare)}
	}
	for _, f := range []struct {
		name string
		alts [2]int
	}{{"fastAlternatives", c.FastAlternatives}, {"fastBaselineAlternatives", c.FastBaselineAlternatives}} {
		name, alts := f.name, f.alts
		if alts == [2]int{} {
			continue
		}
		for _, o := range alts {
			if o < 1 || o > ratioHi {
				return &ConfigError{name, fmt.Sprintf("%v: each offset must be from 1 to %d (4 per doubling), e.g. [8, 12]", alts, ratioHi)}
			}
		}
	}
	if !(c.FastBaselineEvidence > 1) || math.IsInf(c.FastBaselineEvidence, 0) {
		return &ConfigError{"fastBaselineEvidence", fmt.Sprintf("%v must be an e-value above 1, e.g. 20", c.FastBaselineEvidence)}
	}
	return nil
}

// Metric names in reports.
const (
	MetricErrors = "5xx-rate"
	MetricGuard  = "5xx-guard"
	MetricFast   = "5xx-fast"
	MetricMedian = "latency-median"
	MetricTail   = "latency-tail"
)

// guardAlphaShare is the share of Alpha given to the 5xx guard (half to its comparison with the
// baseline, half to the one with stable) and fastAlphaShare the fast 5xx test's; the three paired
// tests split the rest. The fast test is the path for large regressions, where every half nat of
// evidence is a second.
const (
	guardAlphaShare = 0.1
	fastAlphaShare  = 0.4
)

// paired is one paired metric: the rollout-long Fail test and the current step's test, whose Pass,
// interval and sample-size estimate describe this step only (a step's Pass is earned at that step's
// traffic).
type paired struct {
	fail *PairedTest // capped: decides when instances cannot be told apart
	// raw is the whole canary's test without the block cap: with two or more named canary instances
	// the per-instance tests (capped) carry the robustness to one instance's bad moment, and the
	// whole canary's test confirms at full speed
	raw  *PairedTest
	step *PairedTest
	cfg  PairedConfig
	// inst are the rollout-long Fail tests of each named canary instance (instCfg: level
	// instanceAlpha, the same block cap); instFail is set when the whole canary's test and every
	// instance's (two or more) exceed their thresholds at the same look
	inst     map[string]*PairedTest
	instCfg  PairedConfig
	instFail bool
}

func (p *paired) endBlock() {
	p.fail.EndBlock()
	p.step.EndBlock()
	for _, t := range p.inst {
		t.EndBlock()
	}
}

// checkInstances sets instFail when the whole canary's test and every named canary instance's test
// exceed their thresholds now.
func (p *paired) checkInstances() {
	if p.instFail || len(p.inst) < 2 || !p.raw.Exceeds() {
		return
	}
	for _, t := range p.inst {
		if !t.Exceeds() {
			return
		}
	}
	p.instFail = true
}

func (p *paired) add(plus, zero, minus int64) {
	p.fail.Add(plus, zero, minus)
	p.raw.Add(plus, zero, minus)
	p.step.Add(plus, zero, minus)
}

// instanceAlpha is the level of the per-instance confirmations: alpha itself. Weaker levels were
// measured too (TestOneInstanceEpisodeIsNotARegression, an episode on some canary instance every 2.5
// minutes): alpha^(2/3) let 3.5% of good canaries roll back at alpha 0.01, √alpha more; at alpha
// none of 200 did. The cost is time: each instance has only its share of the requests. Without the
// confirmation on the paired tests (the block cap alone), the simulator rolled back 2.7% of the good
// canaries of aa-instance-errors and 1.3% of aa-instance-slow (150 rollouts, seed 2); with it none.
func instanceAlpha(alpha float64) float64 { return alpha }

// failed: the whole canary's test reached its threshold (alpha); with two or more named canary
// instances, at a look where every instance's own test also exceeded its threshold. The
// confirmation is an intersection-union test: it holds at alpha whenever one instance is no worse
// at that time, so one instance's bad moment, or bad moments of different instances at different
// times, cannot roll back a good version even when they fool the whole canary's test; when they do
// not, the whole canary's test keeps its alpha.
func (p *paired) failed() bool {
	if len(p.inst) >= 2 {
		return p.instFail
	}
	return p.fail.Verdict() == Fail
}

// guardTests compares a group of canary requests with the baseline (tolerance GuardRatio, or
// GuardRatio × FreshFactor for a warm control) and with stable (GuardRatio × FreshFactor), each at
// half the guard's alpha.
type guardTests struct{ base, stable *RatioTest }

func (g guardTests) failed() bool  { return g.base.Verdict() == Fail || g.stable.Verdict() == Fail }
func (g guardTests) exceeds() bool { return g.base.Exceeds() || g.stable.Exceeds() }
func (g guardTests) endBlock()     { g.base.EndBlock(); g.stable.EndBlock() }

// exceedance is a quantile comparison: the paired tests and the step's raw exceedance counts.
type exceedance struct {
	q                      float64
	paired                 *paired
	canaryAbove, baseAbove int64
	threshold              float64 // the last threshold used, ms
}

// Analyzer runs the request-level sequential tests of one canary against its baseline over a
// rollout. Feed it a Batch per look with Observe, call NewStep when the traffic split changes; read
// the verdict with Verdict and the explanation with Report. Not safe for concurrent use.
//
// Fail evidence accumulates over the whole rollout (alpha bounds a false rollback over every step
// and look); Pass evidence is collected per step, at that step's split. Evidence grows by at most
// BlockCap per BlockLength of time (Config), so a burst of dependent requests weighs little. With
// instance names on the canary's samples and two or more canary instances, the guard fails only when
// its test exceeds the threshold for every canary instance at once: a version regression shows on
// all of them, one instance's bad moment (a GC storm, a noisy neighbour) on one.
type Analyzer struct {
	cfg        Config
	alpha      float64 // per paired test
	guardAlpha float64
	fastAlpha  float64
	fast       *fastTest // nil with NoGuard
	errs       *paired
	median     exceedance
	tail       exceedance

	guard     *guardTests // whole canary
	instGuard map[string]*guardTests
	guardFail bool      // with named instances: the whole canary's guard and every instance's exceeded at once
	blockEnd  time.Time // end of the open evidence block
	legacy    int       // untimed slots in the open block

	slots    *slotter
	clusters *clusterTests
	thr      *Histogram // latencies of paired baseline requests from earlier slots
	hc       *Histogram // latencies of the step's paired requests, for reports
	hb       *Histogram

	steps                  int
	canaryN, baselineN     int64 // the step's paired requests
	canaryErr, baselineErr int64 // among them
	seenC, seenB           int64 // the step's requests, paired or not

	// changes counts the changes of the state Report explains (closed slots, new steps): a Report
	// asked for again before the next change is the cached one (the engine asks at every look, and
	// most looks close no slot).
	changes, reportAt uint64
	report            *Report
}

// New checks cfg (zero fields take defaults) and returns an analyzer with no data.
func New(cfg Config) (*Analyzer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sequential analyzer: %w", err)
	}
	cfg = cfg.withDefaults()
	a := &Analyzer{cfg: cfg, alpha: cfg.Alpha / 3, thr: NewHistogram(), slots: newSlotter(cfg)}
	if !cfg.NoGuard {
		a.guardAlpha = cfg.Alpha * guardAlphaShare
		a.fastAlpha = cfg.Alpha * fastAlphaShare
		if cfg.FastAlphaShare > 0 {
			a.fastAlpha = cfg.Alpha * cfg.FastAlphaShare
		}
		a.alpha = (cfg.Alpha - a.guardAlpha - a.fastAlpha) / 3
	}
	a.clusters = newClusterTests(cfg, a.alpha)
	// priors for the sample-size estimate: about two error rates' worth of non-zero 5xx differences,
	// half of the median comparisons, 2(1-q) of the tail comparisons
	var err error
	mk := func(margin, prior float64) *paired {
		if err != nil {
			return nil
		}
		c := PairedConfig{Alpha: a.alpha, Beta: cfg.Beta, Margin: margin, PriorNonZero: prior, BlockCap: cfg.BlockCap,
			PassBlockCap: cfg.BlockCap / 2}
		var f, raw *PairedTest
		if f, err = NewPairedTest(c); err != nil {
			return nil
		}
		rc := c
		rc.BlockCap, rc.PassBlockCap = 0, 0
		raw, _ = NewPairedTest(rc) // c is valid, so is rc
		ic := c
		ic.Alpha = instanceAlpha(c.Alpha)
		return &paired{fail: f, raw: raw, cfg: c, inst: map[string]*PairedTest{}, instCfg: ic}
	}
	a.errs = mk(cfg.ErrorMargin, 2*cfg.ErrorMargin)
	a.median = exceedance{q: 0.5, paired: mk(cfg.MedianMargin, 0.5)}
	a.tail = exceedance{q: cfg.TailQuantile, paired: mk(cfg.TailMargin, 2*(1-cfg.TailQuantile))}
	if err != nil {
		return nil, fmt.Errorf("sequential analyzer: %w", err)
	}
	if !cfg.NoGuard {
		g, err := a.newGuard(false)
		if err != nil {
			return nil, fmt.Errorf("sequential analyzer: %w", err)
		}
		a.guard, a.instGuard = g, map[string]*guardTests{}
		baseEvidence := cfg.FastBaselineEvidence
		if cfg.WarmControl {
			baseEvidence = 0 // the control is stable: no baseline to compare with
		}
		if a.fast, err = newFastTest(a.fastAlpha, cfg.FreshFactor, cfg.FastInstanceEvidence, baseEvidence,
			altOffsets(cfg.FastAlternatives, fastAlts), altOffsets(cfg.FastBaselineAlternatives, baseAlts)); err != nil {
			return nil, fmt.Errorf("sequential analyzer: %w", err)
		}
	}
	a.NewStep()
	return a, nil
}

// newGuard builds the guard's two comparisons: for the whole canary at half the guard's alpha with
// the block cap, for one instance (instance) the same (instanceAlpha).
func (a *Analyzer) newGuard(instance bool) (*guardTests, error) {
	base := a.cfg.GuardRatio
	if a.cfg.WarmControl {
		base *= a.cfg.FreshFactor
	}
	alpha, capped := a.guardAlpha/2, a.cfg.BlockCap
	if instance {
		alpha = instanceAlpha(alpha)
	}
	b, err := NewRatioTest(RatioConfig{Alpha: alpha, Tolerance: min(base, 1024), BlockCap: capped})
	if err != nil {
		return nil, err
	}
	s, err := NewRatioTest(RatioConfig{Alpha: alpha, Tolerance: min(a.cfg.GuardRatio*a.cfg.FreshFactor, 1024), BlockCap: capped})
	if err != nil {
		return nil, err
	}
	return &guardTests{base: b, stable: s}, nil
}

// NewStep starts a step: the Pass tests, intervals and counts start over at the new split; the
// Fail evidence and the latency thresholds carry on.
func (a *Analyzer) NewStep() {
	a.changes++
	a.steps++
	a.clusters.newStep()
	for _, p := range []*paired{a.errs, a.median.paired, a.tail.paired} {
		p.step, _ = NewPairedTest(p.cfg) // the config was validated by New
	}
	a.median.canaryAbove, a.median.baseAbove, a.tail.canaryAbove, a.tail.baseAbove = 0, 0, 0, 0
	a.hc, a.hb = NewHistogram(), NewHistogram()
	a.canaryN, a.baselineN, a.canaryErr, a.baselineErr, a.seenC, a.seenB = 0, 0, 0, 0, 0, 0
}

// Config returns the configuration with defaults filled in.
func (a *Analyzer) Config() Config { return a.cfg }

// Observe adds one batch, looks once and returns the verdict.
func (a *Analyzer) Observe(b Batch) Verdict {
	a.seenC += int64(len(b.Canary))
	a.seenB += int64(len(b.Baseline))
	a.slots.add(b.Canary, b.Baseline, b.StableRequests, b.StableErrors, b.Until, a.closeSlot)
	return a.Verdict()
}

// closeSlot judges a closed time slot: the guard on all its requests, the paired tests on its pairs;
// then, if the slot ends the open evidence block, closes it.
func (a *Analyzer) closeSlot(c, b []Sample, stableN, stableE int64, end time.Time) {
	a.changes++
	if a.guard != nil {
		a.observeGuard(c, b, stableN, stableE)
	}
	if pc, pb := a.slots.pairs(c, b); len(pc) > 0 {
		a.pair(pc, pb)
	}
	a.clusters.slot(c, b, end)
	if a.guard != nil && !a.guardFail && len(a.instGuard) >= 2 && a.guard.exceeds() {
		all := true
		for _, g := range a.instGuard {
			all = all && g.exceeds()
		}
		a.guardFail = all
	}
	blockDone := false
	if end.IsZero() { // untimed batches: one second each
		a.legacy++
		blockDone = time.Duration(a.legacy)*time.Second >= a.cfg.BlockLength
	} else {
		if a.blockEnd.IsZero() {
			a.blockEnd = end.Add(-a.slots.lastWidth()).Add(a.cfg.BlockLength)
		}
		blockDone = !end.Before(a.blockEnd)
	}
	if blockDone {
		a.legacy = 0
		if !end.IsZero() {
			for !a.blockEnd.After(end) {
				a.blockEnd = a.blockEnd.Add(a.cfg.BlockLength)
			}
		}
		for _, p := range []*paired{a.errs, a.median.paired, a.tail.paired} {
			p.endBlock()
		}
		if a.guard != nil {
			a.guard.endBlock()
			for _, g := range a.instGuard {
				g.endBlock()
			}
			a.fast.endBlock()
		}
	}
}

// observeGuard feeds the guard a slot's requests (every request, paired or not), per canary instance
// too. The conditional tests condition on the slot's error count: a slot is long enough that the
// quieter cohort has a few requests, so a canary error nearly always has control requests beside it
// (conditioning on 250 ms looks at 5 requests/s threw most of the evidence away).
func (a *Analyzer) observeGuard(c, b []Sample, stableN, stableE int64) {
	be, bn := countFailed(b), int64(len(b))
	ce, cn := countFailed(c), int64(len(c))
	add := func(g *guardTests, ce, cn int64) {
		if cn == 0 {
			return
		}
		g.base.Add(ce, cn, be, bn)
		g.stable.Add(ce, cn, stableE, stableN)
	}
	add(a.guard, ce, cn)
	var per map[string]*tally
	for _, s := range c {
		if s.Instance == "" {
			continue
		}
		if per == nil {
			per = map[string]*tally{}
		}
		t := per[s.Instance]
		if t == nil {
			t = &tally{}
			per[s.Instance] = t
		}
		t.n++
		if s.Failed {
			t.e++
		}
	}
	for name, t := range per {
		g := a.instGuard[name]
		if g == nil {
			g, _ = a.newGuard(true) // the config was validated by New
			a.instGuard[name] = g
		}
		add(g, t.e, t.n)
	}
	// a slot longer than a block (low traffic: up to 30 s) may add a block's cap per block it spans
	a.fast.instCap = instanceBlockCap * max(1, float64(a.slots.lastWidth())/float64(a.cfg.BlockLength))
	a.fast.add(ce, cn, per, be, bn, be+stableE, bn+stableN)
}

func (a *Analyzer) guardFailed() bool {
	if a.guard == nil {
		return false
	}
	if len(a.instGuard) >= 2 {
		return a.guardFail
	}
	return a.guard.failed()
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

// diff3 is a pair difference's sign counts.
type diff3 struct{ p, z, m int64 }

func (d *diff3) add(canaryWorse, baselineWorse bool) {
	switch {
	case canaryWorse && !baselineWorse:
		d.p++
	case baselineWorse && !canaryWorse:
		d.m++
	default:
		d.z++
	}
}

// pair runs the tests on the pairs of a closed slot. The latency thresholds are fixed from earlier
// slots before any of these requests is looked at, and these baseline requests join the threshold
// estimate only afterwards: the thresholds are predictable, as the tests require.
func (a *Analyzer) pair(c, b []Sample) {
	var all diff3
	inst := map[string]*[3]diff3{}
	at := func(name string) *[3]diff3 {
		if name == "" {
			return nil
		}
		d := inst[name]
		if d == nil {
			d = &[3]diff3{}
			inst[name] = d
		}
		return d
	}
	for i := range c {
		all.add(c[i].Failed, b[i].Failed)
		if d := at(c[i].Instance); d != nil {
			d[0].add(c[i].Failed, b[i].Failed)
		}
		if c[i].Failed {
			a.canaryErr++
		}
		if b[i].Failed {
			a.baselineErr++
		}
	}
	a.errs.add(all.p, all.z, all.m)
	a.canaryN += int64(len(c))
	a.baselineN += int64(len(b))
	if a.thr.N() >= int64(a.cfg.MinThresholdSamples) {
		for k, e := range []*exceedance{&a.median, &a.tail} {
			e.threshold = a.thr.Quantile(e.q)
			var d diff3
			for i := range c {
				ca, ba := c[i].LatencyMS > e.threshold, b[i].LatencyMS > e.threshold
				d.add(ca, ba)
				if di := at(c[i].Instance); di != nil {
					di[k+1].add(ca, ba)
				}
				if ca {
					e.canaryAbove++
				}
				if ba {
					e.baseAbove++
				}
			}
			e.paired.add(d.p, d.z, d.m)
		}
	}
	for name, d := range inst {
		for k, p := range []*paired{a.errs, a.median.paired, a.tail.paired} {
			if k > 0 && a.thr.N() < int64(a.cfg.MinThresholdSamples) {
				continue
			}
			t := p.inst[name]
			if t == nil {
				t, _ = NewPairedTest(p.instCfg) // validated by New
				p.inst[name] = t
			}
			t.Add(d[k].p, d[k].z, d[k].m)
		}
	}
	for _, p := range []*paired{a.errs, a.median.paired, a.tail.paired} {
		p.checkInstances()
	}
	for i := range c {
		a.thr.Add(b[i].LatencyMS)
		a.hb.Add(b[i].LatencyMS)
		a.hc.Add(c[i].LatencyMS)
	}
}

// Verdict combines the tests: Fail if any test failed (over the whole rollout); Pass if the 5xx-rate,
// median and tail tests all passed in this step; NeedMoreData otherwise.
func (a *Analyzer) Verdict() Verdict {
	if a.pairedFailed(0) || a.pairedFailed(1) || a.pairedFailed(2) || a.guardFailed() ||
		a.fast != nil && a.fast.failed {
		return Fail
	}
	if a.errs.step.passed() && a.median.paired.step.passed() && a.tail.paired.step.passed() {
		return Pass
	}
	return NeedMoreData
}

// pairedMetrics are the paired tests in the order of the client-level tests (5xx, median, tail).
func (a *Analyzer) pairedMetrics() [3]*paired {
	return [3]*paired{a.errs, a.median.paired, a.tail.paired}
}

// pairedFailed reports whether paired metric j (5xx, median, tail) failed: by the client-level
// test when clients judge (sticky cohorts, or client keys whose stickiness is not known yet), else
// by the request-level tests.
func (a *Analyzer) pairedFailed(j int) bool {
	if a.clusters.judges() {
		return a.clusters.failed[j]
	}
	return a.pairedMetrics()[j].failed()
}

// SafeToExpand reports whether no test has failed and every paired test's upper confidence bound for
// this step (at level 1-Beta) is below factor times its margin: the data exclude a regression factor
// times the minimum detectable effect, with error probability at most Beta per test. An engine may use
// it to move an undecided canary to a larger, non-final step, where more traffic settles the test
// sooner; only Pass should promote. factor must be at least 1.
func (a *Analyzer) SafeToExpand(factor float64) bool {
	if a.Verdict() == Fail || !(factor >= 1) {
		return false
	}
	for _, p := range []*paired{a.errs, a.median.paired, a.tail.paired} {
		t := p.step
		if t.passed() {
			continue
		}
		if UpperBound(t.Counts(), t.cfg.Beta) >= factor*t.cfg.Margin {
			return false
		}
	}
	return true
}

// ExpandWithin projects whether SafeToExpand(factor) may hold after morePairs more request pairs
// in this step: for every undecided paired test, its upper bound's distance from the observed mean
// shrinks like 1/√n, and the projected bound must fall below factor times the margin. A guide for
// how long to wait, like MorePairs: it decides nothing about the canary.
func (a *Analyzer) ExpandWithin(factor float64, morePairs int64) bool {
	if a.Verdict() == Fail || !(factor >= 1) || morePairs < 0 {
		return false
	}
	for _, p := range []*paired{a.errs, a.median.paired, a.tail.paired} {
		t := p.step
		if t.passed() {
			continue
		}
		n := float64(t.Counts().N())
		if n == 0 {
			return false
		}
		mean := t.Counts().Mean()
		ub := UpperBound(t.Counts(), t.cfg.Beta)
		proj := mean + (ub-mean)*math.Sqrt(n/(n+float64(morePairs)))
		if proj >= factor*t.cfg.Margin {
			return false
		}
	}
	return true
}

// FailEvidence is the largest log e-value of any Fail test, as a share of the log of its threshold
// (1 at the threshold, 0 without evidence; negative values are 0): how close the data are to a
// rollback. An engine may keep watching a canary whose evidence builds up rather than pause it.
func (a *Analyzer) FailEvidence() float64 {
	share := func(e, alpha float64) float64 {
		if !(e > 1) {
			return 0
		}
		return math.Log(e) / -math.Log(alpha)
	}
	best := 0.0
	for j, p := range a.pairedMetrics() {
		e := p.fail.FailEValue()
		if a.clusters.judges() {
			e = a.clusters.eValue(j)
		}
		best = max(best, share(e, a.alpha))
	}
	if a.guard != nil {
		best = max(best, share(a.guard.base.EValue(), a.guardAlpha/2), share(a.guard.stable.EValue(), a.guardAlpha/2),
			share(math.Exp(a.fast.logE()), a.fastAlpha))
	}
	return best
}

// ErrorExcess reports whether the canary has failed more often than the control (baseline plus
// stable) so far in the rollout, with at least one 5xx: no evidence yet, but a reason for an engine
// to keep watching a step at low traffic rather than pause it for lack of data (a canary failing
// 10% of 5 requests a minute shows its first 5xx long before any test can decide).
func (a *Analyzer) ErrorExcess() bool {
	if a.fast == nil {
		return false
	}
	g := a.fast.whole
	return g.CanaryErrors > 0 && g.CanaryRequests > 0 && g.ControlRequests > 0 &&
		float64(g.CanaryErrors)*float64(g.ControlRequests) > float64(g.ControlErrors)*float64(g.CanaryRequests)
}

// Unpaired is the step's requests per cohort that were not paired (the larger cohort's surplus of a
// slot, or a slot with requests of one cohort only): a low pairing yield at low traffic explains a
// large MoreRequests.
func (a *Analyzer) Unpaired() (canary, baseline int64) {
	return max(0, a.seenC-a.canaryN), max(0, a.seenB-a.baselineN)
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
	MorePairs int64 `json:"morePairs,omitempty"`
	// Instances: a Fail shown by every one of this many canary instances (0: judged as one group).
	Instances int `json:"instances,omitempty"`
	// Clients: judged by clients (sticky cohorts); Canary and Baseline then count clients.
	Clients bool   `json:"clients,omitempty"`
	Reason  string `json:"reason"`
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
	if a.report == nil || a.reportAt != a.changes {
		r := a.newReport()
		a.report, a.reportAt = &r, a.changes
	}
	return a.report.clone()
}

// clone is a copy sharing nothing with r.
func (r *Report) clone() Report {
	c := *r
	c.Decisions = slices.Clone(r.Decisions)
	for i := range c.Decisions {
		if u := c.Decisions[i].Upper; u != nil {
			v := *u
			c.Decisions[i].Upper = &v
		}
	}
	return c
}

func (a *Analyzer) newReport() Report {
	r := Report{Verdict: a.Verdict(), CanaryRequests: a.canaryN, BaselineRequests: a.baselineN}
	r.Decisions = append(r.Decisions, a.errorDecision())
	if a.guard != nil {
		r.Decisions = append(r.Decisions, a.guardDecision(), a.fast.decision(a.fastAlpha))
	}
	r.Decisions = append(r.Decisions, a.exceedDecision(MetricMedian, &a.median), a.exceedDecision(MetricTail, &a.tail))
	var failed []string
	for _, d := range r.Decisions {
		switch {
		case d.Verdict == Fail:
			failed = append(failed, d.Metric)
		case d.Verdict == Pass: // decided: needs no more data
		case d.Metric != MetricGuard && d.Metric != MetricFast && (d.MorePairs > r.MoreRequests || d.MorePairs < 0) && r.MoreRequests >= 0:
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

// pairedDecision fills the fields common to the paired tests: from the rollout-long test when the
// metric failed, else from this step's test.
func (a *Analyzer) pairedDecision(metric string, p *paired) Decision {
	t, v := p.step, NeedMoreData
	byRequests := !a.clusters.judges()
	switch {
	case byRequests && p.failed() && len(p.inst) >= 2:
		t, v = p.raw, Fail
	case byRequests && p.failed():
		t, v = p.fail, Fail
	case p.step.passed():
		v = Pass
	}
	lo, hi := t.Interval()
	hi100 := 100 * hi
	d := Decision{Metric: metric, Verdict: v, Canary: t.Counts().N(), Baseline: t.Counts().N(),
		Effect: 100 * t.Counts().Mean(), EffectUnit: "pp", Lower: 100 * lo, Upper: &hi100, LowerLevel: 1 - a.alpha,
		UpperLevel: 1 - a.cfg.Beta, Tolerance: 100 * t.cfg.Tolerance, Margin: 100 * t.cfg.Margin,
		EValue: finite(t.FailEValue()), PassEValue: finite(t.PassEValue())}
	if v == NeedMoreData {
		d.MorePairs = t.MorePairsToPass()
	}
	if v == Fail && len(p.inst) >= 2 {
		d.Instances = len(p.inst)
	}
	return d
}

func (d *Decision) explain(what string) {
	level := func(l float64) string { return trimFloat(100*l, 2) + "%" }
	pp := func(v float64) string { return fmt.Sprintf("%+.2f pp", v) }
	head := fmt.Sprintf("%s over %d request pairs: difference %s", what, d.Canary, pp(d.Effect))
	switch d.Verdict {
	case Fail:
		d.Reason = fmt.Sprintf("%s; its %s lower bound %s is above the %s tolerance: fail", head, level(d.LowerLevel), pp(d.Lower), pp(d.Tolerance))
		if d.Instances > 0 {
			d.Reason += fmt.Sprintf(", on each of the %d canary instances", d.Instances)
		}
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
	if a.clusters.judges() && a.clusters.failed[0] {
		return a.clusters.decision(MetricErrors, 0, "5xx share", a.alpha)
	}
	d := a.pairedDecision(MetricErrors, a.errs)
	d.Compared = "5xx share of canary vs baseline requests, paired within time slots"
	d.Unit = "%"
	d.CanaryValue, d.BaselineValue = pct(a.canaryErr, a.canaryN), pct(a.baselineErr, a.baselineN)
	d.explain(fmt.Sprintf("5xx rate canary %.2f%% (%d/%d) vs baseline %.2f%% (%d/%d) this step",
		d.CanaryValue, a.canaryErr, a.canaryN, d.BaselineValue, a.baselineErr, a.baselineN))
	return d
}

func (a *Analyzer) exceedDecision(metric string, e *exceedance) Decision {
	q := "P" + trimFloat(100*e.q, 2)
	if e.q == 0.5 {
		q = "median"
	}
	j := 2 // the client-level test of this metric
	if e == &a.median {
		j = 1
	}
	if a.clusters.judges() && a.clusters.failed[j] {
		return a.clusters.decision(metric, j, "share of requests slower than the pooled running "+q, a.alpha)
	}
	d := a.pairedDecision(metric, e.paired)
	d.Compared = fmt.Sprintf("share of canary vs baseline requests slower than the baseline's running %s, paired within time slots", q)
	d.Unit = "%"
	n := e.paired.step.Counts().N()
	d.CanaryValue, d.BaselineValue = pct(e.canaryAbove, n), pct(e.baseAbove, n)
	if n == 0 {
		d.Reason = fmt.Sprintf("latency %s: waiting for %d baseline requests to estimate the threshold (have %d): need more data",
			q, a.cfg.MinThresholdSamples, a.thr.N())
		return d
	}
	if d.Verdict == Fail {
		n = e.paired.fail.Counts().N()
	}
	cq, bq := a.hc.Quantile(e.q), a.hb.Quantile(e.q)
	d.explain(fmt.Sprintf("latency %s canary %.1f ms vs baseline %.1f ms (%+.0f%%); requests slower than baseline's %s %.1f ms: canary %.2f%% vs baseline %.2f%%, paired after the first %d baseline requests set the threshold,",
		q, cq, bq, finite(100*(cq/bq-1)), q, e.threshold, d.CanaryValue, d.BaselineValue, a.cfg.MinThresholdSamples))
	return d
}

func (a *Analyzer) guardDecision() Decision {
	// the comparison closer to its threshold (or the one that failed) is shown
	g, with, alpha := a.guard.base, "baseline", a.guardAlpha/2
	if s := a.guard.stable; s.ControlRequests > 0 && (s.Verdict() == Fail && g.Verdict() != Fail ||
		g.Verdict() == s.Verdict() && s.EValue() > g.EValue()) {
		g, with = s, "stable"
	}
	v := NeedMoreData
	if a.guardFailed() {
		v = Fail
	}
	d := Decision{Metric: MetricGuard, Verdict: v,
		Compared: fmt.Sprintf("5xx rate of canary vs baseline (tolerated ratio %.3g) and vs warm stable (%.3g: fresh instances may fail %.3g times as often), as rate ratios, conditional on each batch's error count",
			a.guard.base.Tolerance(), a.guard.stable.Tolerance(), a.cfg.FreshFactor),
		Canary: g.CanaryRequests, Baseline: g.ControlRequests, Unit: "%",
		CanaryValue: pct(g.CanaryErrors, g.CanaryRequests), BaselineValue: pct(g.ControlErrors, g.ControlRequests),
		Effect: finite(g.Ratio()), EffectUnit: "ratio", Lower: g.LowerBound(alpha), LowerLevel: 1 - alpha, Tolerance: g.Tolerance(),
		EValue: finite(g.EValue())}
	if v == Fail && len(a.instGuard) >= 2 {
		d.Instances = len(a.instGuard)
	}
	ratio := fmt.Sprintf("rate ratio %.2f", d.Effect)
	if math.IsInf(g.Ratio(), 1) {
		ratio = "rate ratio unbounded (no control errors)"
	}
	head := fmt.Sprintf("5xx guard: canary %.2f%% (%d/%d) vs %s %.2f%% (%d/%d), %s",
		d.CanaryValue, g.CanaryErrors, g.CanaryRequests, with, d.BaselineValue, g.ControlErrors, g.ControlRequests, ratio)
	switch {
	case v == Fail:
		d.Reason = fmt.Sprintf("%s; its %s%% lower bound %.2f is above the tolerated ratio %.3g: fail", head, trimFloat(100*d.LowerLevel, 2), d.Lower, d.Tolerance)
		if d.Instances > 0 {
			d.Reason += fmt.Sprintf(", on each of the %d canary instances", d.Instances)
		}
	case g.Verdict() == Fail || g.Exceeds():
		d.Reason = fmt.Sprintf("%s; above the tolerated ratio %.3g, but not on every canary instance (one instance's bad moment is not a regression of the version): no gross regression", head, d.Tolerance)
	default:
		d.Reason = fmt.Sprintf("%s; e-value %.3g below %.3g, no gross regression", head, d.EValue, 1/alpha)
	}
	return d
}
