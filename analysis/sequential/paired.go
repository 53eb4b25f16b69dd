package sequential

import (
	"encoding"
	"errors"
	"fmt"
	"math"
)

// Verdict is the outcome of a sequential test at one look.
type Verdict int

// The three verdicts. The zero value is NeedMoreData: without evidence nothing is decided.
const (
	NeedMoreData Verdict = iota // not enough evidence either way yet
	Pass                        // evidence the canary is not worse than the margin
	Fail                        // evidence the canary is worse than the tolerance
)

var verdictNames = [...]string{"need-more-data", "pass", "fail"}

func (v Verdict) String() string {
	if v < 0 || int(v) >= len(verdictNames) {
		return fmt.Sprintf("verdict(%d)", int(v))
	}
	return verdictNames[v]
}

// MarshalText renders the verdict as "pass", "fail" or "need-more-data".
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText parses what MarshalText renders.
func (v *Verdict) UnmarshalText(b []byte) error {
	for i, n := range verdictNames {
		if string(b) == n {
			*v = Verdict(i)
			return nil
		}
	}
	return fmt.Errorf("unknown verdict %q (valid: pass, fail, need-more-data)", b)
}

var (
	_ encoding.TextMarshaler   = Verdict(0)
	_ encoding.TextUnmarshaler = (*Verdict)(nil)
)

// ErrConfig marks an invalid configuration; match it with errors.Is.
var ErrConfig = errors.New("invalid sequential test config")

// ConfigError says which field is wrong and how to fix it. It is invalid input (exit code 2).
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string      { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }
func (e *ConfigError) Unwrap() error      { return ErrConfig }
func (e *ConfigError) InvalidInput() bool { return true }

// PairedConfig configures a PairedTest. Differences D are in {-1, 0, +1}, so their mean is in [-1, 1].
type PairedConfig struct {
	// Alpha bounds the probability of ever reaching Fail when E[D] <= Tolerance, over all looks.
	Alpha float64
	// Beta bounds the probability of ever reaching Pass when E[D] >= Margin, over all looks.
	Beta float64
	// Margin is the smallest regression worth detecting (the minimum detectable effect) on the scale of
	// E[D]; Pass means "evidence that E[D] < Margin". Must be in (Tolerance, 1).
	Margin float64
	// Tolerance is the largest difference that is not a regression; Fail means "evidence that
	// E[D] > Tolerance". Usually 0. Must be in [0, Margin).
	Tolerance float64
	// PriorNonZero is the expected share of non-zero differences before any data, used only by
	// MorePairs (as two pseudo-observations); 0 means 0.5.
	PriorNonZero float64
	// BlockCap, when positive, caps the log-growth of every bet's wealth within one block (EndBlock
	// closes a block) at BlockCap nats: a burst of dependent requests (one instance's bad moment)
	// then weighs at most one block's worth, however many requests it spans. Capping keeps the
	// test valid: min(F, e^cap) of a martingale factor F is a supermartingale factor. 0: no cap.
	BlockCap float64
	// PassBlockCap, when positive, caps the pass side's growth per block instead of BlockCap (the
	// analyzer uses half of BlockCap: a burst on the baseline side, one baseline instance failing,
	// must not pass a worse canary, and a pass waits for minBake anyway).
	PassBlockCap float64
}

// Validate checks the fields and says how to fix a wrong one.
func (c PairedConfig) Validate() error {
	switch {
	case !(c.Alpha > 0 && c.Alpha < 1):
		return &ConfigError{"alpha", fmt.Sprintf("%v must be between 0 and 1 (exclusive), e.g. 0.01", c.Alpha)}
	case !(c.Beta > 0 && c.Beta < 1):
		return &ConfigError{"beta", fmt.Sprintf("%v must be between 0 and 1 (exclusive), e.g. 0.05", c.Beta)}
	case !(c.Tolerance >= 0 && c.Tolerance < 1):
		return &ConfigError{"tolerance", fmt.Sprintf("%v must be at least 0 and below 1, e.g. 0", c.Tolerance)}
	case !(c.Margin > c.Tolerance && c.Margin < 1):
		return &ConfigError{"margin", fmt.Sprintf("%v must be above the tolerance %v and below 1, e.g. 0.01", c.Margin, c.Tolerance)}
	case !(c.PriorNonZero >= 0 && c.PriorNonZero <= 1):
		return &ConfigError{"priorNonZero", fmt.Sprintf("%v must be between 0 and 1, e.g. 0.02", c.PriorNonZero)}
	case !(c.BlockCap >= 0) || math.IsInf(c.BlockCap, 0):
		return &ConfigError{"blockCap", fmt.Sprintf("%v must be a finite number of nats, at least 0, e.g. 1", c.BlockCap)}
	case !(c.PassBlockCap >= 0) || math.IsInf(c.PassBlockCap, 0) || c.PassBlockCap > 0 && c.BlockCap == 0:
		return &ConfigError{"passBlockCap", fmt.Sprintf("%v must be a finite number of nats, at least 0, and needs a blockCap, e.g. 0.5", c.PassBlockCap)}
	}
	return nil
}

// betScales are the bets of the mixture as fractions of the largest bet that keeps the wealth
// positive. Log-spaced from 5% to 95% covers the effects that matter here, from large (a 10% 5xx
// canary against a clean baseline, best bet near the top) to small (a share shifted by a few points
// on a 50/50 comparison, best bet near 10%); eight components cost log(8) = 2.1 nats of evidence
// against the best of them in hindsight, and neighbours are 1.5 times apart, so the best one grows
// at least 96% as fast as the best constant bet of the range.
var betScales = func() []float64 {
	const k = 8
	s := make([]float64, k)
	for i := range s {
		s[i] = 0.05 * math.Pow(19, float64(i)/float64(k-1))
	}
	return s
}()

// Counts are the numbers of pair differences of each sign.
type Counts struct {
	Plus  int64 `json:"plus"`  // canary worse in this pair (D = +1)
	Zero  int64 `json:"zero"`  // no difference (D = 0)
	Minus int64 `json:"minus"` // baseline worse (D = -1)
}

// N is the number of pairs.
func (c Counts) N() int64 { return c.Plus + c.Zero + c.Minus }

// Mean is the observed mean difference, 0 without pairs.
func (c Counts) Mean() float64 {
	if c.N() == 0 {
		return 0
	}
	return float64(c.Plus-c.Minus) / float64(c.N())
}

// logFailE is log of the mixture e-value against H0: E[D] <= m, for m in (-1, 1): the average over bets
// lambda = s/(1+m) of prod (1 + lambda (D - m)).
func logFailE(c Counts, m float64) float64 {
	terms := make([]float64, len(betScales))
	for i, s := range betScales {
		l := s / (1 + m)
		terms[i] = float64(c.Plus)*math.Log1p(l*(1-m)) + float64(c.Zero)*math.Log1p(-l*m) +
			float64(c.Minus)*math.Log1p(-l*(1+m))
	}
	return logMeanExp(terms)
}

// logPassE is log of the mixture e-value against H0: E[D] >= m: the average over bets
// lambda = s/(1-m) of prod (1 - lambda (D - m)).
func logPassE(c Counts, m float64) float64 {
	terms := make([]float64, len(betScales))
	for i, s := range betScales {
		l := s / (1 - m)
		terms[i] = float64(c.Plus)*math.Log1p(-l*(1-m)) + float64(c.Zero)*math.Log1p(l*m) +
			float64(c.Minus)*math.Log1p(l*(1+m))
	}
	return logMeanExp(terms)
}

func logMeanExp(x []float64) float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = max(mx, v)
	}
	if math.IsInf(mx, 0) {
		return mx
	}
	var s float64
	for _, v := range x {
		s += math.Exp(v - mx)
	}
	return mx + math.Log(s/float64(len(x)))
}

// PairedTest is an always-valid test of the mean of pair differences in {-1, 0, +1}: Fail when the
// mixture e-value against E[D] <= Tolerance reaches 1/Alpha, Pass when the one against E[D] >= Margin
// reaches 1/Beta. Both are sticky: once reached, later data do not undo them (the guarantees are about
// ever reaching them). Fail outranks Pass: a test that passed keeps watching for a regression.
// Not safe for concurrent use.
type PairedTest struct {
	cfg            PairedConfig
	c              Counts
	failAt, passAt int64 // pairs seen when the verdict was reached, 0 if not
	logFailLimit   float64
	logPassLimit   float64
	// precomputed per-bet log factors at the tolerance (fail side) and the margin (pass side)
	failPlus, failZero, failMinus []float64
	passPlus, passZero, passMinus []float64
	failLogW, passLogW            []float64 // committed log-wealth (closed blocks, capped)
	failBlk, passBlk              []float64 // log-growth in the open block
	failEff, passEff              []float64 // scratch: committed + capped open block
}

// NewPairedTest checks cfg and returns a test with no data.
func NewPairedTest(cfg PairedConfig) (*PairedTest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("paired test: %w", err)
	}
	k := len(betScales)
	t := &PairedTest{cfg: cfg, logFailLimit: -math.Log(cfg.Alpha), logPassLimit: -math.Log(cfg.Beta),
		failPlus: make([]float64, k), failZero: make([]float64, k), failMinus: make([]float64, k),
		passPlus: make([]float64, k), passZero: make([]float64, k), passMinus: make([]float64, k),
		failLogW: make([]float64, k), passLogW: make([]float64, k),
		failBlk: make([]float64, k), passBlk: make([]float64, k), failEff: make([]float64, k), passEff: make([]float64, k)}
	m, g := cfg.Tolerance, cfg.Margin
	for i, s := range betScales {
		l := s / (1 + m)
		t.failPlus[i], t.failZero[i], t.failMinus[i] = math.Log1p(l*(1-m)), math.Log1p(-l*m), math.Log1p(-l*(1+m))
		l = s / (1 - g)
		t.passPlus[i], t.passZero[i], t.passMinus[i] = math.Log1p(-l*(1-g)), math.Log1p(l*g), math.Log1p(l*(1+g))
	}
	return t, nil
}

// Config returns the configuration.
func (t *PairedTest) Config() PairedConfig { return t.cfg }

// Add records one batch of pairs (counts must be non-negative) and updates the verdict: one look.
func (t *PairedTest) Add(plus, zero, minus int64) {
	if plus < 0 || zero < 0 || minus < 0 {
		panic(fmt.Sprintf("sequential: negative counts %d/%d/%d", plus, zero, minus))
	}
	if plus+zero+minus == 0 {
		return
	}
	t.c.Plus += plus
	t.c.Zero += zero
	t.c.Minus += minus
	p, z, n := float64(plus), float64(zero), float64(minus)
	for i := range t.failLogW {
		t.failBlk[i] += p*t.failPlus[i] + z*t.failZero[i] + n*t.failMinus[i]
		t.passBlk[i] += p*t.passPlus[i] + z*t.passZero[i] + n*t.passMinus[i]
	}
	if t.failAt == 0 && t.logFail() >= t.logFailLimit {
		t.failAt = t.c.N()
	}
	if t.passAt == 0 && t.logPass() >= t.logPassLimit {
		t.passAt = t.c.N()
	}
	if t.cfg.BlockCap == 0 {
		t.EndBlock() // without a cap every batch commits at once
	}
}

// EndBlock closes a block: every bet's growth in it, capped at BlockCap, is committed.
func (t *PairedTest) EndBlock() {
	for i := range t.failLogW {
		t.failLogW[i] += t.capped(t.failBlk[i])
		t.passLogW[i] += t.passCapped(t.passBlk[i])
		t.failBlk[i], t.passBlk[i] = 0, 0
	}
}

func (t *PairedTest) passCapped(g float64) float64 {
	if t.cfg.PassBlockCap > 0 {
		return min(g, t.cfg.PassBlockCap)
	}
	return t.capped(g)
}

func (t *PairedTest) capped(g float64) float64 {
	if t.cfg.BlockCap > 0 {
		return min(g, t.cfg.BlockCap)
	}
	return g
}

// logFail and logPass are the log mixture e-values now: committed wealth times the open block's
// capped growth.
func (t *PairedTest) logFail() float64 {
	for i := range t.failLogW {
		t.failEff[i] = t.failLogW[i] + t.capped(t.failBlk[i])
	}
	return logMeanExp(t.failEff)
}

func (t *PairedTest) logPass() float64 {
	for i := range t.passLogW {
		t.passEff[i] = t.passLogW[i] + t.passCapped(t.passBlk[i])
	}
	return logMeanExp(t.passEff)
}

// Counts returns the pairs seen so far.
func (t *PairedTest) Counts() Counts { return t.c }

// Verdict is Fail once the fail e-value has reached 1/Alpha, else Pass once the pass e-value has
// reached 1/Beta, else NeedMoreData.
func (t *PairedTest) Verdict() Verdict {
	switch {
	case t.failAt > 0:
		return Fail
	case t.passAt > 0:
		return Pass
	}
	return NeedMoreData
}

// Exceeds reports whether the Fail e-value is at 1/Alpha now (Verdict stays Fail once it was).
func (t *PairedTest) Exceeds() bool { return t.logFail() >= t.logFailLimit }

// passed reports whether the Pass e-value has reached 1/Beta (whatever the Fail side says).
func (t *PairedTest) passed() bool { return t.passAt > 0 }

// FailEValue is the current e-value against "E[D] <= Tolerance" (Fail at 1/Alpha).
func (t *PairedTest) FailEValue() float64 { return math.Exp(t.logFail()) }

// PassEValue is the current e-value against "E[D] >= Margin" (Pass at 1/Beta).
func (t *PairedTest) PassEValue() float64 { return math.Exp(t.logPass()) }

// Interval is the current confidence sequence for E[D]: the lower bound at level 1-Alpha and the upper
// bound at level 1-Beta, each valid at any stopping time. Without data it is [-1, 1].
func (t *PairedTest) Interval() (lower, upper float64) {
	return LowerBound(t.c, t.cfg.Alpha), UpperBound(t.c, t.cfg.Beta)
}

// LowerBound is the smallest m that the test of "E[D] <= m" at level alpha does not reject: a lower
// confidence bound for E[D], valid at any stopping time.
func LowerBound(c Counts, alpha float64) float64 {
	limit := -math.Log(alpha)
	// logFailE decreases in m; find the crossing of limit in (-1, 1).
	lo, hi := -1.0, 1.0
	if c.N() == 0 || logFailE(c, lo+1e-12) < limit {
		return -1
	}
	for range 60 {
		mid := (lo + hi) / 2
		if logFailE(c, mid) >= limit {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// UpperBound is the largest m that the test of "E[D] >= m" at level beta does not reject.
func UpperBound(c Counts, beta float64) float64 {
	limit := -math.Log(beta)
	lo, hi := -1.0, 1.0
	if c.N() == 0 || logPassE(c, hi-1e-12) < limit {
		return 1
	}
	for range 60 {
		mid := (lo + hi) / 2
		if logPassE(c, mid) >= limit {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// MorePairs estimates how many more pairs the test needs to reach a verdict for the configured margin:
// if the observed mean is below half the margin, the pairs to Pass when there is no difference;
// otherwise the pairs to Fail when the difference is the margin. The share of non-zero differences is
// taken from the data with two pseudo-observations at PriorNonZero. It projects every bet's wealth along its
// expected log-growth per pair and finds when the mixture would reach its threshold: a guide for how
// long to extend a step, not a guarantee. 0 once a verdict is reached; -1 if unreachable.
func (t *PairedTest) MorePairs() int64 {
	if t.Verdict() != NeedMoreData {
		return 0
	}
	n := float64(t.c.N())
	prior := t.cfg.PriorNonZero
	if prior == 0 {
		prior = 0.5
	}
	nu := (float64(t.c.Plus+t.c.Minus) + 2*prior) / (n + 2)
	t.logFail()
	t.logPass()
	if t.c.Mean() < t.cfg.Margin/2 {
		return t.morePairsToPass(nu)
	}
	return morePairs(t.failEff, t.logFailLimit, nu, t.cfg.Margin, func(i int, p, z, m float64) float64 {
		return p*t.failPlus[i] + z*t.failZero[i] + m*t.failMinus[i]
	})
}

// MorePairsToPass estimates how many more pairs the test needs to Pass a canary with no difference
// (the question "how long until a good canary passes"); 0 once a verdict is reached, -1 if
// unreachable. Unlike MorePairs it never switches to the pairs to Fail when the observed mean crosses
// half the margin, so it does not jump with the noise of a few pairs (one 5xx among 30 pairs).
func (t *PairedTest) MorePairsToPass() int64 {
	if t.Verdict() != NeedMoreData {
		return 0
	}
	prior := t.cfg.PriorNonZero
	if prior == 0 {
		prior = 0.5
	}
	return t.morePairsToPass((float64(t.c.Plus+t.c.Minus) + 2*prior) / (float64(t.c.N()) + 2))
}

func (t *PairedTest) morePairsToPass(nu float64) int64 {
	t.logPass()
	return morePairs(t.passEff, t.logPassLimit, nu, 0, func(i int, p, z, m float64) float64 {
		return p*t.passPlus[i] + z*t.passZero[i] + m*t.passMinus[i]
	})
}

// morePairs returns the smallest n for which the mixture of the current log-wealths, each grown by n
// times its expected log-growth per pair under a difference with the given mean and non-zero share
// nu, reaches limit.
func morePairs(logW []float64, limit, nu, mean float64, growth func(i int, p, z, m float64) float64) int64 {
	nu = max(nu, math.Abs(mean)+1e-9)
	nu = min(nu, 1)
	p, m := (nu+mean)/2, (nu-mean)/2
	z := 1 - p - m
	g := make([]float64, len(logW))
	anyGrowth := false
	for i := range logW {
		g[i] = growth(i, p, z, m)
		anyGrowth = anyGrowth || g[i] > 0
	}
	if !anyGrowth {
		return -1
	}
	proj := make([]float64, len(logW))
	reaches := func(n float64) bool {
		for i := range logW {
			proj[i] = logW[i] + n*g[i]
		}
		return logMeanExp(proj) >= limit
	}
	if reaches(0) {
		return 0
	}
	hi := 1.0
	for !reaches(hi) {
		hi *= 2
		if hi > 1e12 {
			return -1
		}
	}
	lo := hi / 2
	if hi == 1 {
		lo = 0
	}
	for hi-lo > 1 {
		mid := math.Floor((lo + hi) / 2)
		if reaches(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return int64(hi)
}
