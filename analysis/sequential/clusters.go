package sequential

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Sticky cohorts: judging clients, not requests.
//
// With a sticky key (Kong mode hash, canaryctl proxy --hash-on) each client stays on one cohort, so
// canary and baseline serve different users. Clients differ — in how often they call, how slow their
// requests are, how often they fail — and with a few dozen clients per cohort the two populations
// differ by more than a +1 pp regression. A request-level test takes that difference for a
// regression once it has enough requests: half of the good canaries would roll back if the tests ran
// long enough (31-37% did in the simulator). No amount of requests from the same clients removes it:
// the unit that was randomized is the client, and only more clients shrink the difference.
//
// The test here is a randomization test over clients, run as an e-process:
//
//   - Which cohort a client lands in is decided by the hash of its key, independently of how the
//     client behaves. Under "the canary is the baseline" (each client would be served alike by
//     either), its requests do not depend on its cohort either.
//   - A client is used once: over its first ClusterRequests requests of the step in which it first
//     reached canary or baseline ("fresh" in that step), and only if all of them went to one cohort.
//     When it has them it settles with its 5xx share and its shares above the pooled (canary plus
//     baseline, label-blind) running median and tail thresholds. Clients seen in an earlier step are
//     left out: the gateway's bucket layout may have moved them between cohorts (baseline's buckets
//     become canary's when the canary grows), so their cohort is no longer a fair draw.
//   - Settled clients are collected in windows (4 clients or a minute, closed only at slot ends and
//     at step changes: all label-blind). Within a window every fresh client had the same chance of
//     being canary, so given the window's values and how many were canary, the canary set is a
//     uniformly random subset: the difference of cohort means T has mean 0, and it is at least
//     -W, W the drop when the canary gets the smallest values (windowBet). Each window multiplies
//     every bet's wealth by 1 + f T/W (f from the paired tests' bet scales); the mixture is an
//     e-process and Ville's inequality bounds a false Fail by alpha — whatever the clients'
//     heterogeneity, trends in time or shared events, because only the assignment is random.
//
// What it rests on: the hash is independent of client behaviour; the canary and baseline shares of
// fresh clients do not change within a step; a client key names one hashed user (an IP behind which
// several hashed users sit shows in both cohorts and is left out). The cost is power: a window's
// evidence comes from a few clients, so small effects need hundreds of clients (the 50/50 step).
//
// Detecting stickiness: a gateway that splits per request sends a client's requests to both cohorts
// (a client with 6 requests in canary or baseline has at least 2 in each with probability 78%); a
// sticky one never within a step (a request of the previous split in flight at a step change is
// one, not two). Unless the spec says the cohorts are sticky (Config.StickyClients), the analyzer
// counts, per step, the clients with 6 requests in canary or baseline and those with 2 in each:
// once 10 were counted and at most 1 in 20 had 2 in each, the cohorts are sticky and this test
// judges (a per-request split looks like that with probability below 10^-6); once one has 2 in each
// and they are a quarter of those counted, the split is per request for good. Until either, the
// request-level tests judge: with many clients of a few requests each (no decision for a long
// time) the cohorts' populations differ little, and with a few busy clients — where they differ
// most — the decision comes within seconds.

// Cluster test defaults.
const (
	defaultClusterRequests   = 100
	defaultClusterWindow     = 4
	defaultClusterWindowTime = time.Minute
	maxTrackedClients        = 1 << 20
)

// stickiness is what the analyzer knows of the split: per request, sticky, or not yet known.
type stickiness int8

const (
	stickyUnknown stickiness = iota
	stickyNo
	stickyYes
)

const (
	cohortCanary   uint8 = 1
	cohortBaseline uint8 = 2
)

// clientRec is one client's state.
type clientRec struct {
	first int32    // the step in which it was first seen in canary or baseline
	step  int32    // the step of mask and n
	mask  uint8    // cohorts seen in step
	n     [2]int32 // requests in canary, baseline in step
	done  bool     // settled, or left out
	// its first requests of the step it is fresh in
	sn, se      int32 // requests, 5xx
	sl          int32 // requests with latency thresholds set
	sMed, sTail int32 // above them
}

// settledClient is a client's contribution to a window: its cohort and the three metrics' values
// (NaN: no value for that metric).
type settledClient struct {
	canary bool
	y      [3]float64
}

// clusterTests are the client-level Fail tests of the three paired metrics (5xx, median, tail).
type clusterTests struct {
	declared bool // the spec says the cohorts are sticky
	mode     stickiness
	anyKey   bool // a sample carried a client key
	clients  map[string]*clientRec
	step     int32
	// this step's counts for detection
	eligible, mixed int

	m          int32 // requests a client settles with
	winK       int
	winT       time.Duration
	minThr     int64
	tailQ      float64
	pool       *Histogram // canary and baseline latencies
	thr        [2]float64 // median, tail; 0 before minThr
	win        []settledClient
	ys, sorted []float64 // scratch
	isC        []bool
	winStart   time.Time

	logLimit float64
	logW     [3][]float64 // per metric, per bet scale
	failed   [3]bool
	// what the tests saw, for reports
	windows            int64
	canaryN, baselineN [3]int64
	canarySum, baseSum [3]float64
	settledC, settledB int64
	dropped            int64
}

func newClusterTests(cfg Config, alpha float64) *clusterTests {
	t := &clusterTests{declared: cfg.StickyClients, clients: map[string]*clientRec{}, m: defaultClusterRequests,
		winK: defaultClusterWindow, winT: defaultClusterWindowTime, minThr: int64(cfg.MinThresholdSamples),
		tailQ: cfg.TailQuantile, pool: NewHistogram(), logLimit: -math.Log(alpha)}
	if t.declared {
		t.mode = stickyYes
	}

	for j := range t.logW {
		t.logW[j] = make([]float64, len(betScales))
	}
	return t
}

// judges reports whether the client-level tests, not the request-level ones, decide the Fails:
// the cohorts are sticky (declared, or seen).
func (t *clusterTests) judges() bool { return t.mode == stickyYes }

// newStep closes the open window (a window never spans steps: fresh clients of different steps
// had different chances of being canary) and starts the step's detection counts.
func (t *clusterTests) newStep() {
	t.closeWindow()
	t.step++
	t.eligible, t.mixed = 0, 0
	t.winStart = time.Time{}
}

// slot takes a closed slot's requests (every request of canary c and baseline b), then closes the
// window if it is full or old.
func (t *clusterTests) slot(c, b []Sample, end time.Time) {
	if t.pool.N() >= t.minThr {
		t.thr = [2]float64{t.pool.Quantile(0.5), t.pool.Quantile(t.tailQ)}
	}
	for _, x := range c {
		t.add(x, cohortCanary)
	}
	for _, x := range b {
		t.add(x, cohortBaseline)
	}
	for _, x := range c {
		t.pool.Add(x.LatencyMS)
	}
	for _, x := range b {
		t.pool.Add(x.LatencyMS)
	}
	if !t.declared && t.mode == stickyUnknown {
		switch {
		case t.mixed >= 1 && 4*t.mixed >= t.eligible:
			t.mode = stickyNo
		case t.eligible >= 10 && 20*t.mixed <= t.eligible:
			t.mode = stickyYes
		}
	}
	if end.IsZero() {
		return
	}
	if t.winStart.IsZero() {
		t.winStart = end
	}
	if len(t.win) >= t.winK || end.Sub(t.winStart) >= t.winT {
		t.closeWindow()
		t.winStart = end
	}
}

func (t *clusterTests) add(x Sample, cohort uint8) {
	if x.Client == "" {
		return
	}
	t.anyKey = true
	r := t.clients[x.Client]
	if r == nil {
		if len(t.clients) >= maxTrackedClients {
			return // beyond the bound a new client is not followed (about 100 MB of state by then)
		}
		r = &clientRec{first: t.step, step: t.step}
		t.clients[x.Client] = r
	}
	if r.step != t.step {
		r.step, r.mask, r.n = t.step, 0, [2]int32{}
	}
	r.mask |= cohort
	r.n[cohort-1]++
	// detection: a client with 4 requests in the step is counted, and as mixed once it has 2 in
	// each cohort (a request or two of the previous split, in flight at a step change, do not count)
	if r.n[0]+r.n[1] == 6 {
		t.eligible++
	}
	if r.n[cohort-1] == 2 && r.n[2-cohort] >= 2 {
		t.mixed++
	}
	if r.done || r.first != t.step {
		return
	}
	if r.mask == cohortCanary|cohortBaseline {
		r.done = true
		t.dropped++
		return
	}
	r.sn++
	if x.Failed {
		r.se++
	}
	if t.thr[0] > 0 {
		r.sl++
		if x.LatencyMS > t.thr[0] {
			r.sMed++
		}
		if x.LatencyMS > t.thr[1] {
			r.sTail++
		}
	}
	if r.sn < t.m {
		return
	}
	r.done = true
	s := settledClient{canary: r.mask == cohortCanary, y: [3]float64{float64(r.se) / float64(r.sn), math.NaN(), math.NaN()}}
	if 2*r.sl >= r.sn {
		s.y[1], s.y[2] = float64(r.sMed)/float64(r.sl), float64(r.sTail)/float64(r.sl)
	}
	if s.canary {
		t.settledC++
	} else {
		t.settledB++
	}
	t.win = append(t.win, s)
}

// closeWindow bets on the window's difference of cohort means, scaled by its range.
func (t *clusterTests) closeWindow() {
	if len(t.win) == 0 {
		return
	}
	t.windows++
	for j := range t.logW {
		ys, canary := t.ys[:0], t.isC[:0]
		for _, s := range t.win {
			if !math.IsNaN(s.y[j]) {
				ys = append(ys, s.y[j])
				canary = append(canary, s.canary)
			}
		}
		t.ys, t.isC = ys, canary
		for i := range ys {
			if canary[i] {
				t.canaryN[j]++
				t.canarySum[j] += ys[i]
			} else {
				t.baselineN[j]++
				t.baseSum[j] += ys[i]
			}
		}
		x, ok := windowBet(ys, canary, t.sorted[:0])
		if !ok {
			continue
		}
		for i, f := range betScales {
			t.logW[j][i] += math.Log1p(f * x)
		}
		if logMeanExp(t.logW[j]) >= t.logLimit {
			t.failed[j] = true
		}
	}
	t.win = t.win[:0]
}

// eValue is metric j's current e-value.
func (t *clusterTests) eValue(j int) float64 { return math.Exp(logMeanExp(t.logW[j])) }

// means are metric j's mean value over the canary's and the baseline's settled clients so far.
func (t *clusterTests) means(j int) (canary, baseline float64) {
	if t.canaryN[j] > 0 {
		canary = t.canarySum[j] / float64(t.canaryN[j])
	}
	if t.baselineN[j] > 0 {
		baseline = t.baseSum[j] / float64(t.baselineN[j])
	}
	return canary, baseline
}

// decision explains metric j's client-level Fail.
func (t *clusterTests) decision(metric string, j int, what string, alpha float64) Decision {
	c, b := t.means(j)
	e := t.eValue(j)
	d := Decision{Metric: metric, Verdict: Fail,
		Compared: fmt.Sprintf("%s of canary vs baseline clients (each client's first %d requests of the step it joined), as a randomization test over clients: the cohorts are sticky", what, t.m),
		Canary:   t.canaryN[j], Baseline: t.baselineN[j], CanaryValue: 100 * c, BaselineValue: 100 * b, Unit: "%",
		Effect: 100 * (c - b), EffectUnit: "pp", EValue: finite(e), Clients: true} // no interval: the e-value decides
	d.Reason = fmt.Sprintf("sticky cohorts, judged by client: %s %.2f%% over %d canary clients vs %.2f%% over %d baseline clients (%+.2f pp); e-value %.3g over %d windows of clients reached %.3g: fail",
		what, d.CanaryValue, d.Canary, d.BaselineValue, d.Baseline, d.Effect, e, t.windows, 1/alpha)
	return d
}

// FewClients reports whether the cohorts are sticky and the step's clients are too few to settle the
// paired tests' margins, while no Fail test is past half its threshold (FailEvidence, in log terms):
// an engine may then move a non-final step on at its duration, because with sticky cohorts only more
// clients — a larger step — can decide, not more requests from the same ones (a dozen users per
// cohort at 2.5% differ by more than 5 times the margins, so SafeToExpand rarely holds there).
func (a *Analyzer) FewClients() bool {
	c := a.clusters
	if c.mode != stickyYes || a.Verdict() != NeedMoreData || a.FailEvidence() >= 0.5 {
		return false
	}
	return true
}

// windowBet is a window's bet outcome x: the canary clients' mean minus the baseline clients' mean,
// divided by the largest drop any assignment of as many canary clients could give (the smallest
// values to the canary). Given the values and the number of canary clients, a uniformly random
// assignment gives x mean 0, and x >= -1, so 1 + f x (0 <= f < 1) is a fair, positive bet. ok is
// false when either cohort has no client or every assignment gives the same difference. sorted is
// scratch space.
func windowBet(ys []float64, canary []bool, sorted []float64) (x float64, ok bool) {
	var nc, nb int
	var sc, sb float64
	for i, y := range ys {
		if canary[i] {
			nc++
			sc += y
		} else {
			nb++
			sb += y
		}
	}
	if nc == 0 || nb == 0 {
		return 0, false
	}
	sorted = append(sorted, ys...)
	slices.Sort(sorted)
	var low, high float64
	for _, y := range sorted[:nc] {
		low += y
	}
	for _, y := range sorted[nc:] {
		high += y
	}
	worst := high/float64(nb) - low/float64(nc)
	if !(worst > 0) {
		return 0, false
	}
	return (sc/float64(nc) - sb/float64(nb)) / worst, true
}
