package sequential

import (
	"fmt"
	"math"
)

// The fast path for large error regressions (metric 5xx-fast).
//
// The other error tests are built to stay quiet on correlated production traffic: the paired 5xx
// test and the guard cap the evidence a block of time may add, and with named instances they need
// every canary instance to be worse at the same look at their full level. That costs time: a canary
// answering 10% of its requests with 5xx at a 2.5% step (5 requests/s) waits a minute or more. This
// test is the other half of the error budget: no cap, no per-instance level, a shifted null.
//
//   - Null: the canary's 5xx rate is at most FreshFactor times stable's in the same time slot
//     (stable serves 20-40 times the canary's requests, so its rate is known well within seconds)
//     and at most the baseline's (deployed with the canary, as fresh): threeway.go, a conditional
//     multinomial mixture conditioned on each slot's error count, so stable's unknown rate cancels:
//     an e-process for H0 whatever that rate and however it moves between slots (a shared burst of
//     errors moves every cohort alike and adds no evidence). With a warm control (no baseline) the
//     null is the canary at most FreshFactor times stable's, RatioTest's conditional binomial.
//   - Why the shifted null is robust: normal traffic sits deep inside it (a canary failing as often
//     as stable is a factor FreshFactor below the tolerance), so the e-value falls quickly after a
//     burst ends: the evidence one instance's bad moment adds is forgotten within seconds to
//     minutes instead of waiting for another to add up with. Drift shared by every cohort does not
//     move the ratio at all.
//   - Per-instance consistency: with two or more named canary instances (each with at least half a
//     fair share of the canary's requests), a Fail also needs every such instance's own test
//     (canary instance vs baseline plus stable, ratio at most FreshFactor) to show at least
//     FastInstanceEvidence at that look. A version regression shows on
//     every instance; one instance's 10-20 s episode leaves the other instances' e-values near 0.
//     This check only removes rejections, so the error guarantee is the whole canary's test's.
//
// The guarantee, stated plainly: P(false Fail) <= its alpha whenever the canary's 5xx rate stays
// within FreshFactor times stable's and within the baseline's. Fresh instances that fail more than
// FreshFactor times as often as warm stable are outside it (a cold start; the baseline comparison
// bounds that case by 1/FastBaselineEvidence), as are all canary instances having a bad moment at
// the same time; the robust tests still hold their own alpha there, the README shows the measured
// rates.
type fastTest struct {
	cfg   RatioConfig
	whole *RatioTest
	// base compares the canary with the baseline alone (tolerated ratio 1; nil when the control is
	// warm stable): a Fail also needs its e-value at baseEvidence, so instances that fail more often
	// only because they are fresh, as fresh as the baseline, cannot roll back with probability above
	// 1/baseEvidence whatever their fresh factor (Ville's inequality on this e-process alone).
	base     *RatioTest
	inst     map[string]*RatioTest
	instLogE float64 // log of the e-value every named instance needs at the crossing look
	// null is the test whose alpha the Fail carries: canary vs baseline and stable at once, H0: the
	// canary fails no more often than the baseline and at most FreshFactor times as often as stable
	// (threeway.go); nil with a warm control (no baseline), where whole decides
	null   *threeWay
	failed bool
	// instances: how many named canary instances confirmed the Fail (0: judged as one group)
	instances int
	// instCap is the instances' cap for the slot being added (instanceBlockCap per block of time
	// the slot spans; 0: instanceBlockCap)
	instCap float64
}

// The alternatives, as grid offsets (4 per doubling): the fast test's are 4 and 8 times its
// tolerated ratio, where a 10%-5xx canary against 0.5% stable sits (at a tolerated 1.5, 20/1.5 =
// 13); with few errors (5 requests/s, a 2.5% step) the nearer alternatives reach the threshold
// one or two errors sooner than 4 and 16 times. The baseline comparison's are 8 and 16 times
// (ratio 1): about x1.8 per canary error the baseline does not match.
// instanceBlockCap caps what one block of time (Config.BlockLength) adds to an instance's e-value in
// the consistency check: one instance's burst (20% 5xx for 15 s) would otherwise leave an e-value of
// e^30 that takes minutes to decay below FastInstanceEvidence, long enough for another instance's
// unrelated burst to complete the "every instance" condition. A regression adds about one nat per
// block per instance at a 2.5% step, so the cap costs it little.
const instanceBlockCap = 1.0

var (
	fastAlts = [2]int{8, 12}
	baseAlts = [2]int{12, 16}
)

// altOffsets returns the configured alternatives, or def when none are.
func altOffsets(cfg, def [2]int) [2]int {
	if cfg == [2]int{} {
		return def
	}
	return cfg
}

func newFastTest(alpha, ratio, instanceEvidence, baseEvidence float64, fastAlts, baseAlts [2]int) (*fastTest, error) {
	cfg := RatioConfig{Alpha: alpha, Tolerance: ratio}
	w, err := newRatioTestAlts(cfg, fastAlts)
	if err != nil {
		return nil, fmt.Errorf("fast 5xx test: %w", err)
	}
	f := &fastTest{cfg: cfg, whole: w, inst: map[string]*RatioTest{}, instLogE: math.Log(instanceEvidence)}
	if baseEvidence > 0 {
		if f.base, err = newRatioTestAlts(RatioConfig{Alpha: 1 / baseEvidence, Tolerance: 1}, baseAlts); err != nil {
			return nil, fmt.Errorf("fast 5xx test: %w", err)
		}
		if f.null, err = newThreeWay(alpha, ratio, fastAlts); err != nil {
			return nil, fmt.Errorf("fast 5xx test: %w", err)
		}
	}
	return f, nil
}

// nullExceeds reports whether the test that carries the fast test's alpha is at 1/alpha now: the
// three-way comparison with a baseline, the whole canary's against baseline plus stable without.
func (f *fastTest) nullExceeds() bool {
	if f.null != nil {
		return f.null.exceeds()
	}
	return f.whole.Exceeds()
}

// tally is one canary instance's requests and 5xx in a slot.
type tally struct{ e, n int64 }

// add feeds one slot: the canary's errors and requests (per named instance too), the baseline's and
// the control's (baseline plus stable).
func (f *fastTest) add(ce, cn int64, per map[string]*tally, be, bn, ctrlE, ctrlN int64) {
	if cn == 0 {
		return
	}
	f.whole.Add(ce, cn, ctrlE, ctrlN)
	if f.null != nil {
		f.null.add(ce, cn, be, bn, ctrlE-be, ctrlN-bn)
	}
	if f.base != nil {
		f.base.Add(ce, cn, be, bn)
	}
	for name, t := range per {
		it := f.inst[name]
		if it == nil {
			c := f.cfg
			c.BlockCap = instanceBlockCap
			it, _ = newRatioTestAlts(c, f.whole.alts) // validated by newFastTest
			f.inst[name] = it
		}
		it.cfg.BlockCap = max(f.instCap, instanceBlockCap)
		it.Add(t.e, t.n, ctrlE, ctrlN)
	}
	f.check()
}

// check sets failed when the whole canary's test is at its threshold and every named instance with
// at least half a fair share of the canary's requests shows the consistency evidence.
func (f *fastTest) check() {
	if f.failed || !f.nullExceeds() || f.base != nil && !f.base.Exceeds() {
		return
	}
	if len(f.inst) < 2 {
		f.failed = true
		return
	}
	var total int64
	for _, t := range f.inst {
		total += t.CanaryRequests
	}
	fair := float64(total) / float64(len(f.inst))
	n := 0
	for _, t := range f.inst {
		if float64(t.CanaryRequests) < fair/2 {
			continue
		}
		if t.logCapped() < f.instLogE {
			return
		}
		n++
	}
	f.failed, f.instances = true, n
}

// endBlock closes a block of the instances' capped tests.
func (f *fastTest) endBlock() {
	for _, t := range f.inst {
		t.EndBlock()
	}
}

// logE is the log e-value that carries the fast test's alpha.
func (f *fastTest) logE() float64 {
	if f.null != nil {
		return f.null.logE()
	}
	return f.whole.logCapped()
}

// decision explains the fast test.
func (f *fastTest) decision(alpha float64) Decision {
	g := f.whole
	v := NeedMoreData
	if f.failed {
		v = Fail
	}
	compared := fmt.Sprintf("5xx rate of canary vs baseline plus stable in the same time slots, as a rate ratio, against a tolerated ratio of %.3g, conditional on each slot's error count", g.Tolerance())
	if f.null != nil {
		compared = fmt.Sprintf("5xx rates of canary, baseline and stable in the same time slots, conditional on each slot's error count, against: the canary fails no more often than the baseline and at most %.3g times as often as stable (fresh instances); the rate ratio is canary vs baseline plus stable", g.Tolerance())
	}
	d := Decision{Metric: MetricFast, Verdict: v, Compared: compared,
		Canary: g.CanaryRequests, Baseline: g.ControlRequests, Unit: "%",
		CanaryValue: pct(g.CanaryErrors, g.CanaryRequests), BaselineValue: pct(g.ControlErrors, g.ControlRequests),
		Effect: finite(g.Ratio()), EffectUnit: "ratio", Lower: g.LowerBound(alpha), LowerLevel: 1 - alpha, Tolerance: g.Tolerance(),
		EValue: finite(math.Exp(f.logE())), Instances: f.instances}
	ratio := fmt.Sprintf("rate ratio %.2f", d.Effect)
	if math.IsInf(g.Ratio(), 1) {
		ratio = "rate ratio unbounded (no control errors)"
	}
	head := fmt.Sprintf("5xx fast test: canary %.2f%% (%d/%d) vs baseline+stable %.2f%% (%d/%d), %s",
		d.CanaryValue, g.CanaryErrors, g.CanaryRequests, d.BaselineValue, g.ControlErrors, g.ControlRequests, ratio)
	if f.null != nil {
		head = fmt.Sprintf("5xx fast test: canary %.2f%% (%d/%d) vs baseline %.2f%% (%d/%d) and stable %.2f%% (%d/%d), %s to baseline+stable",
			d.CanaryValue, g.CanaryErrors, g.CanaryRequests, pct(f.null.baseE, f.null.baseN), f.null.baseE, f.null.baseN,
			pct(f.null.stableE, f.null.stableN), f.null.stableE, f.null.stableN, ratio)
	}
	switch {
	case v == Fail:
		d.Reason = fmt.Sprintf("%s; e-value %.3g reached %.3g (the ratio's %s%% lower bound is %.2f, tolerated %.3g): fail",
			head, d.EValue, 1/alpha, trimFloat(100*d.LowerLevel, 2), d.Lower, d.Tolerance)
		if d.Instances > 0 {
			d.Reason += fmt.Sprintf(", shown by each of the %d canary instances", d.Instances)
		}
	case f.nullExceeds():
		d.Reason = fmt.Sprintf("%s; e-value %.3g above %.3g, but not on every canary instance, or the baseline fails about as often (one instance's bad moment, or fresh instances, are not a regression of the version)", head, d.EValue, 1/alpha)
	default:
		d.Reason = fmt.Sprintf("%s; e-value %.3g below %.3g, no large regression", head, d.EValue, 1/alpha)
	}
	return d
}
