package analysis

import "math"

// MannWhitneyMinPValue is the smallest two-sided p-value the exact Mann-Whitney (Wilcoxon rank-sum)
// test can give for samples of n and m values: 2/C(n+m, n), reached when every value of one sample is
// above every value of the other (ties only make it larger). With fewer values than that allows, no
// data at all could be significant: 4 against 4 gives 2/70 ≈ 0.029, so at the judge's 98% level
// (0.02) two cohorts need at least 5 and 5, or 4 and 5, 3 and 7, 2 and 13, 1 and 99 points. Kayenta's
// asymptotic interval does not see this: it clamps its bounds to the range of the data, so two
// points each "exclude" a shift whenever they do not overlap. 1 when n or m is 0.
func MannWhitneyMinPValue(n, m int) float64 {
	if n <= 0 || m <= 0 {
		return 1
	}
	// log C(n+m, n) via log-gamma: exact enough for a threshold, and no overflow
	lc := lgamma(float64(n+m+1)) - lgamma(float64(n+1)) - lgamma(float64(m+1))
	return math.Min(1, 2*math.Exp(-lc))
}

// MannWhitneyCanReject reports whether samples of n and m values can ever be significant at level
// alpha (two-sided) for the exact Mann-Whitney test.
func MannWhitneyCanReject(n, m int, alpha float64) bool {
	// a relative slack absorbs the rounding of exp(-log C) at exact equality (2/C = alpha)
	return MannWhitneyMinPValue(n, m) <= alpha*(1+1e-9)
}

func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}
