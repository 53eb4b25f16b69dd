package sequential

import (
	"fmt"
	"math"
)

// RatioConfig configures a RatioTest.
type RatioConfig struct {
	// Alpha bounds the probability of ever reaching Fail when the canary's error rate is at most
	// Tolerance times the control's, over all looks.
	Alpha float64
	// Tolerance is the largest tolerated rate ratio r0 (canary rate / control rate), at least 1.
	Tolerance float64
	// BlockCap, when positive, caps each alternative's log likelihood ratio gained within one block
	// (EndBlock closes it) at BlockCap nats, as PairedConfig.BlockCap. It applies to the verdict
	// and EValue; LowerBound stays the uncapped one. 0: no cap.
	BlockCap float64
}

// Validate checks the fields and says how to fix a wrong one.
func (c RatioConfig) Validate() error {
	switch {
	case !(c.Alpha > 0 && c.Alpha < 1):
		return &ConfigError{"alpha", fmt.Sprintf("%v must be between 0 and 1 (exclusive), e.g. 0.01", c.Alpha)}
	case !(c.Tolerance >= 1 && c.Tolerance <= 1024):
		return &ConfigError{"tolerance", fmt.Sprintf("rate ratio %v must be between 1 and 1024, e.g. 2", c.Tolerance)}
	case !(c.BlockCap >= 0) || math.IsInf(c.BlockCap, 0):
		return &ConfigError{"blockCap", fmt.Sprintf("%v must be a finite number of nats, at least 0, e.g. 1", c.BlockCap)}
	}
	return nil
}

// The ratio grid: r_i = r0·2^(i/4) for i in [ratioLo, ratioHi], anchored at the tolerated ratio r0.
// The alternatives of a null r_j are r_j times 4 and 16 (grid offsets 8 and 16), weighted equally:
// log(2) = 0.7 nats of mixture cost. The guard is for gross regressions, so its prior sits on large
// ratios; any ratio above about 2·r_j still makes the e-value grow.
const (
	ratioLo    = -24
	ratioHi    = 40
	ratioStep  = 4
	ratioNullI = 0
)

// ratioAltOffsets are the grid offsets of the alternatives (the guard's: 4 and 16 times the null).
var ratioAltOffsets = [2]int{8, 16}

func (t *RatioTest) ratioAt(i int) float64 {
	return t.cfg.Tolerance * math.Pow(2, float64(i)/ratioStep)
}

// RatioTest is an always-valid one-sided test that the canary's error rate is at most Tolerance times
// a control's (baseline plus stable, say), conditional on the error counts of each batch: see the
// package documentation. It only fails (it is a guard); it never passes. Not safe for concurrent use.
type RatioTest struct {
	cfg      RatioConfig
	ll       []float64 // conditional log-likelihood at every grid ratio, up to a constant
	ratio    []float64 // every grid ratio
	logRatio []float64 // and its log
	limit    float64
	failed   bool
	// capped log likelihood ratios of the alternatives against the tolerated ratio: committed
	// (closed blocks) and in the open block
	capLR, blkLR [len(ratioAltOffsets)]float64
	alts         [len(ratioAltOffsets)]int // grid offsets of the alternatives

	CanaryErrors, CanaryRequests   int64
	ControlErrors, ControlRequests int64
}

// NewRatioTest checks cfg and returns a test with no data.
func NewRatioTest(cfg RatioConfig) (*RatioTest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ratio test: %w", err)
	}
	t := &RatioTest{cfg: cfg, ll: make([]float64, ratioHi-ratioLo+1), logRatio: make([]float64, ratioHi-ratioLo+1),
		ratio: make([]float64, ratioHi-ratioLo+1), limit: -math.Log(cfg.Alpha), alts: ratioAltOffsets}
	for i := range t.ratio {
		t.ratio[i] = t.ratioAt(i + ratioLo)
		t.logRatio[i] = math.Log(t.ratio[i])
	}
	return t, nil
}

// newRatioTestAlts is NewRatioTest with other alternatives: grid offsets from the null (4 per
// doubling of the ratio).
func newRatioTestAlts(cfg RatioConfig, alts [len(ratioAltOffsets)]int) (*RatioTest, error) {
	t, err := NewRatioTest(cfg)
	if err != nil {
		return nil, err
	}
	t.alts = alts
	return t, nil
}

// Tolerance is the tolerated ratio.
func (t *RatioTest) Tolerance() float64 { return t.cfg.Tolerance }

// Add records one batch: the canary's errors and requests and the control's, then looks once.
func (t *RatioTest) Add(canaryErrors, canaryRequests, controlErrors, controlRequests int64) {
	if canaryErrors < 0 || controlErrors < 0 || canaryErrors > canaryRequests || controlErrors > controlRequests {
		panic(fmt.Sprintf("sequential: invalid counts %d/%d and %d/%d", canaryErrors, canaryRequests, controlErrors, controlRequests))
	}
	t.CanaryErrors += canaryErrors
	t.CanaryRequests += canaryRequests
	t.ControlErrors += controlErrors
	t.ControlRequests += controlRequests
	if canaryErrors+controlErrors == 0 || canaryRequests == 0 || controlRequests == 0 {
		return // the conditional likelihood of such a batch is 1 for every ratio
	}
	// The conditional log-likelihood x·log(θ) + y·log(1-θ) with θ = r·nc/(r·nc+n0) is, up to terms
	// that do not depend on r and so cancel in every likelihood ratio, x·log(r) - k·log(r·nc+n0).
	x, k := float64(canaryErrors), float64(canaryErrors+controlErrors)
	nc, n0 := float64(canaryRequests), float64(controlRequests)
	step := func(i int) float64 { return x*t.logRatio[i] - k*math.Log(t.ratio[i]*nc+n0) }
	null := ratioNullI - ratioLo
	for a, off := range t.alts {
		if null+off < len(t.ll) {
			t.blkLR[a] += step(null+off) - step(null)
		}
	}
	for i := range t.ll {
		t.ll[i] += step(i)
	}
	if !t.failed && t.logCapped() >= t.limit {
		t.failed = true
	}
	if t.cfg.BlockCap == 0 {
		t.EndBlock()
	}
}

// EndBlock closes a block: the alternatives' likelihood ratios gained in it, capped, are committed.
func (t *RatioTest) EndBlock() {
	for a := range t.blkLR {
		t.capLR[a] += t.capped(t.blkLR[a])
		t.blkLR[a] = 0
	}
}

func (t *RatioTest) capped(g float64) float64 {
	if t.cfg.BlockCap > 0 {
		return min(g, t.cfg.BlockCap)
	}
	return g
}

// logCapped is the log mixture e-value against the tolerated ratio with the block caps.
func (t *RatioTest) logCapped() float64 {
	null := ratioNullI - ratioLo
	var buf [len(ratioAltOffsets)]float64
	terms := buf[:0]
	for a, off := range t.alts {
		if null+off < len(t.ll) {
			terms = append(terms, t.capLR[a]+t.capped(t.blkLR[a]))
		}
	}
	if len(terms) == 0 {
		return 0
	}
	return logMeanExp(terms) + math.Log(float64(len(terms))/float64(len(ratioAltOffsets)))
}

// Exceeds reports whether the e-value is at 1/Alpha now (Verdict stays Fail once it was).
func (t *RatioTest) Exceeds() bool { return t.logCapped() >= t.limit }

// logE is the log mixture e-value against H0: ratio <= r_j (grid index j, offset by ratioLo).
func (t *RatioTest) logE(j int) float64 {
	base := j - ratioLo
	var buf [len(ratioAltOffsets)]float64
	terms := buf[:0]
	for _, k := range t.alts {
		if base+k < len(t.ll) {
			terms = append(terms, t.ll[base+k]-t.ll[base])
		}
	}
	if len(terms) == 0 {
		return 0
	}
	// the missing alternatives beyond the grid count as likelihood ratio 0 (a sub-mixture, still valid)
	return logMeanExp(terms) + math.Log(float64(len(terms))/float64(len(ratioAltOffsets)))
}

// Verdict is Fail once the e-value has reached 1/Alpha, else NeedMoreData.
func (t *RatioTest) Verdict() Verdict {
	if t.failed {
		return Fail
	}
	return NeedMoreData
}

// EValue is the current e-value against "ratio <= Tolerance".
func (t *RatioTest) EValue() float64 { return math.Exp(t.logCapped()) }

// LowerBound is the smallest grid ratio not rejected at level alpha: a lower confidence bound for the
// rate ratio, valid at any stopping time, with the grid's resolution (a factor of 1.19).
func (t *RatioTest) LowerBound(alpha float64) float64 {
	limit := -math.Log(alpha)
	for j := ratioLo; j <= ratioHi; j++ {
		if t.logE(j) < limit {
			return t.ratioAt(j)
		}
	}
	return t.ratioAt(ratioHi)
}

// Ratio is the observed rate ratio (canary errors/requests over control errors/requests): NaN without
// requests, +Inf when only the canary has errors.
func (t *RatioTest) Ratio() float64 {
	if t.CanaryRequests == 0 || t.ControlRequests == 0 {
		return math.NaN()
	}
	rc := float64(t.CanaryErrors) / float64(t.CanaryRequests)
	r0 := float64(t.ControlErrors) / float64(t.ControlRequests)
	if r0 == 0 {
		if rc == 0 {
			return math.NaN()
		}
		return math.Inf(1)
	}
	return rc / r0
}
