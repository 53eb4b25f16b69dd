package analysis

import (
	"errors"
	"fmt"
	"math"
)

// ErrTooFewSamples means a sample is empty (or too small for the statistic asked for).
var ErrTooFewSamples = errors.New("too few samples")

// ErrAllTied is Kayenta's IllegalArgumentException of the same text: at some evaluated shift every
// observation of the two samples is tied, so the rank statistic has zero variance. The judge reports
// the metric as "Error".
var ErrAllTied = errors.New("cannot compute confidence interval when all observations are tied")

// ErrInvalidParameter means a numeric parameter is outside its domain (a confidence level outside
// (0, 1), an outlier factor that is not positive, ...).
var ErrInvalidParameter = errors.New("invalid parameter")

// Interval is a confidence interval with a point estimate of the location shift x - y
// (canary - baseline). Lower may exceed Upper: Kayenta's root finder can return an "inverted" interval
// on flat steps of the rank statistic, and that is reproduced, not fixed.
type Interval struct {
	Lower    float64 `json:"lower"`
	Upper    float64 `json:"upper"`
	Estimate float64 `json:"estimate"`
}

// MannWhitney returns Kayenta's asymptotic Wilcoxon rank-sum confidence interval for the shift x - y
// at confidence level confLevel (the judge uses 0.98), with x the canary (experiment) and y the
// baseline (control). It reproduces kayenta-mannwhitney's calculateConfidenceInterval exactly: the
// continuity-corrected, tie-corrected normal approximation W(d) (see WilcoxonDiff), the bounds
// muMin = min(x) - max(y) and muMax = max(x) - min(y) returned early when W does not change sign, R's
// zeroin root finder with absolute tolerance 1e-4 and at most 1000 iterations, and an estimate that
// solves the continuity-corrected W(d) = 0 (R's wilcox.test solves the uncorrected one, so its
// $estimate differs; its $conf.int agrees to ~1e-11).
//
// Errors: ErrTooFewSamples if x or y is empty, ErrInvalidParameter for a confidence level outside
// (0, 1), ErrAllTied when W has zero variance at an evaluated shift (e.g. one value against one value
// that differ by a factor of less than 2). Infinite values behave as in Kayenta (an infinite canary
// value gives [+Inf, +Inf] and estimate +Inf); NaN should be removed first (the judge does).
func MannWhitney(x, y []float64, confLevel float64) (Interval, error) {
	if len(x) == 0 || len(y) == 0 {
		return Interval{}, fmt.Errorf("mann-whitney interval of %d canary vs %d baseline values: %w",
			len(x), len(y), ErrTooFewSamples)
	}
	if !(confLevel > 0 && confLevel < 1) {
		return Interval{}, fmt.Errorf("mann-whitney interval: confidence level %v must be between 0 and 1 (exclusive): %w",
			confLevel, ErrInvalidParameter)
	}
	w := newWilcoxon(x, y)
	alpha := 1.0 - confLevel
	muMin := scalaMin(x) - scalaMax(y)
	muMax := scalaMax(x) - scalaMin(y)
	zq := NormalQuantile(alpha / 2)

	root := func(z float64) (float64, error) {
		fLo, err := w.diff(muMin, z)
		if err != nil {
			return 0, err
		}
		fHi, err := w.diff(muMax, z)
		if err != nil {
			return 0, err
		}
		if fLo <= 0 {
			return muMin, nil
		}
		if fHi >= 0 {
			return muMax, nil
		}
		return zeroin(muMin, muMax, fLo, fHi, func(d float64) (float64, error) { return w.diff(d, z) })
	}
	lower, err := root(-zq)
	if err != nil {
		return Interval{}, fmt.Errorf("mann-whitney lower confidence bound: %w", err)
	}
	upper, err := root(zq)
	if err != nil {
		return Interval{}, fmt.Errorf("mann-whitney upper confidence bound: %w", err)
	}
	fLo, err := w.diff(muMin, 0)
	if err != nil {
		return Interval{}, fmt.Errorf("mann-whitney estimate: %w", err)
	}
	fHi, err := w.diff(muMax, 0)
	if err != nil {
		return Interval{}, fmt.Errorf("mann-whitney estimate: %w", err)
	}
	est, err := zeroin(muMin, muMax, fLo, fHi, func(d float64) (float64, error) { return w.diff(d, 0) })
	if err != nil {
		return Interval{}, fmt.Errorf("mann-whitney estimate: %w", err)
	}
	return Interval{Lower: lower, Upper: upper, Estimate: est}, nil
}

// WilcoxonDiff returns Kayenta's wilcoxonDiff: the standardized, continuity-corrected rank-sum
// statistic of c(x - d, y) minus zq,
//
//	dz = sum(ranks of x - d) - nx(nx+1)/2 - nx*ny/2
//	s  = sqrt(nx*ny/12 * ((nx+ny+1) - sum(t^3-t)/((nx+ny)(nx+ny-1))))
//	W  = (dz - sign(dz)/2) / s - zq
//
// with average ranks over ties judged in Java's Double.compare order. It returns ErrAllTied when s is 0
// and ErrTooFewSamples when a sample is empty.
func WilcoxonDiff(x, y []float64, d, zq float64) (float64, error) {
	if len(x) == 0 || len(y) == 0 {
		return 0, fmt.Errorf("wilcoxon statistic of %d canary vs %d baseline values: %w", len(x), len(y), ErrTooFewSamples)
	}
	v, err := newWilcoxon(x, y).diff(d, zq)
	if err != nil {
		return 0, fmt.Errorf("wilcoxon statistic at shift %v: %w", d, err)
	}
	return v, nil
}

// wilcoxon evaluates Kayenta's W(d) - zq on pre-sorted samples.
type wilcoxon struct {
	r      *ranker
	nx, ny float64
}

func newWilcoxon(x, y []float64) *wilcoxon {
	return &wilcoxon{r: newRanker(x, y, false), nx: float64(len(x)), ny: float64(len(y))}
}

func (w *wilcoxon) diff(d, zq float64) (float64, error) {
	twoU, ties := w.r.rankStat(d)
	xLen, yLen := w.nx, w.ny
	// Kayenta: rankSum - xLen*(xLen+1)/2 - xLen*yLen/2. The rank sum and both terms are exact multiples
	// of 1/2 far below 2^53, so the difference is exactly U - nx*ny/2 = (2U - 2*nx*ny/2)/2.
	dz := float64(twoU)/2 - xLen*yLen/2
	correction := sign(dz) * 0.5
	sigma := math.Sqrt((xLen * yLen / 12) * ((xLen + yLen + 1) - ties/((xLen+yLen)*(xLen+yLen-1))))
	if sigma == 0 {
		return 0, ErrAllTied
	}
	return (dz-correction)/sigma - zq, nil
}

// sign is Scala's Double.signum (NaN stays NaN, which Kayenta then maps to 0).
func sign(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	default:
		return 0
	}
}

// scalaMin is Scala 2.12's Array[Double].min (Kayenta's Scala version): TraversableOnce.min is a reduceLeft
// keeping the left value when left <= right (IEEE comparison; 2.13 would use Math.min instead).
func scalaMin(v []float64) float64 {
	m := v[0]
	for _, f := range v[1:] {
		if !(m <= f) {
			m = f
		}
	}
	return m
}

// scalaMax is Scala's Array[Double].max: reduceLeft keeping the left value when left >= right.
func scalaMax(v []float64) float64 {
	m := v[0]
	for _, f := range v[1:] {
		if !(m >= f) {
			m = f
		}
	}
	return m
}

// MannWhitneyPValue returns the two-sided p-value of R's
// wilcox.test(x, y, exact = FALSE, correct = TRUE): the normal approximation with tie-corrected
// variance and continuity correction. As in R, non-finite values are dropped first. Kayenta computes no
// p-value; this is for reports. Errors: ErrTooFewSamples if a sample has no finite value, ErrAllTied if
// every value is tied (R returns NaN).
func MannWhitneyPValue(x, y []float64) (float64, error) {
	x, y = finite(x), finite(y)
	if len(x) == 0 || len(y) == 0 {
		return 0, fmt.Errorf("mann-whitney p-value of %d canary vs %d baseline finite values: %w",
			len(x), len(y), ErrTooFewSamples)
	}
	r := newRanker(x, y, true) // R's rank() ties -0 with +0
	twoU, ties := r.rankStat(0)
	nx, ny := float64(len(x)), float64(len(y))
	z := float64(twoU)/2 - nx*ny/2
	sigma := math.Sqrt((nx * ny / 12) * ((nx + ny + 1) - ties/((nx+ny)*(nx+ny-1))))
	if sigma == 0 {
		return 0, fmt.Errorf("mann-whitney p-value: %w", ErrAllTied)
	}
	z = (z - sign(z)*0.5) / sigma
	// R: 2 * min(pnorm(z), pnorm(z, lower.tail = FALSE)). Both tails come from erfc, which keeps its
	// relative accuracy far out (gonum's distuv.Normal.Survival is 1 - erf and returns 0 beyond z ~ 8).
	lowerTail := 0.5 * math.Erfc(-z/math.Sqrt2)
	upperTail := 0.5 * math.Erfc(z/math.Sqrt2)
	return math.Min(2*math.Min(lowerTail, upperTail), 1), nil
}

// finite returns v without NaN and infinite values (a copy only when something is dropped).
func finite(v []float64) []float64 {
	for i, f := range v {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			out := append([]float64(nil), v[:i]...)
			for _, g := range v[i+1:] {
				if !math.IsNaN(g) && !math.IsInf(g, 0) {
					out = append(out, g)
				}
			}
			return out
		}
	}
	return v
}
