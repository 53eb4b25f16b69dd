package analysis

import "math"

// Percentile returns the p-th percentile (p in (0, 100]) of values with commons-math's R-7 estimator,
// as Kayenta's DescriptiveStatistics.percentile computes it: on the sorted values s[0..n-1],
// pos = 1 + (n-1)*(p/100); pos < 1 gives s[0], pos >= n gives s[n-1], otherwise
// lo + (pos - floor(pos))*(hi - lo) with lo = s[floor(pos)-1], hi = s[floor(pos)].
// NaN values are ignored (commons-math's default NaNStrategy.REMOVED); a single value is returned as is.
// It returns NaN for no values, for p outside (0, 100] and for NaN p (commons-math throws for p).
// values is not modified (a copy is sorted).
func Percentile(values []float64, p float64) float64 {
	return Percentiles(values, p)[0]
}

// Percentiles returns Percentile(values, p) for every p, copying values once and placing only the
// order statistics the percentiles read (selectRanks), not sorting the whole copy.
func Percentiles(values []float64, ps ...float64) []float64 {
	out := make([]float64, len(ps))
	var s []float64
	var ranks []int
	for _, p := range ps {
		if p > 0 && p <= 100 && len(values) > 1 {
			if s == nil {
				s = RemoveNaN(values) // a copy: values is not modified
			}
			ranks = append(ranks, r7Ranks(len(s), p)...)
		}
	}
	selectRanks(s, ranks)
	for i, p := range ps {
		switch {
		case !(p > 0 && p <= 100) || len(values) == 0:
			out[i] = math.NaN()
		case len(values) == 1:
			out[i] = values[0] // commons-math returns the single value before removing NaN
		default:
			out[i] = r7(s, p)
		}
	}
	return out
}

// r7Ranks are the 0-based ranks r7 reads for p among n values.
func r7Ranks(n int, p float64) []int {
	if n == 0 {
		return nil
	}
	pos := r7Pos(n, p)
	switch {
	case pos < 1:
		return []int{0}
	case pos >= float64(n):
		return []int{n - 1}
	}
	i := int(math.Floor(pos))
	return []int{i - 1, i}
}

// r7Pos is r7's 1-based position of p among n values.
func r7Pos(n int, p float64) float64 {
	switch q := p / 100; q {
	case 0:
		return 0
	case 1:
		return float64(n)
	default:
		return 1 + float64(n-1)*q
	}
}

// r7 is commons-math Percentile.EstimationType.R_7 on NaN-free values whose ranks r7Ranks names are
// in place (sorted, or placed by selectRanks).
func r7(s []float64, p float64) float64 {
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	pos := r7Pos(n, p)
	fpos := math.Floor(pos)
	intPos := int(fpos)
	dif := pos - fpos
	if pos < 1 {
		return s[0]
	}
	if pos >= float64(n) {
		return s[n-1]
	}
	lower, upper := s[intPos-1], s[intPos]
	return lower + float64(dif*(upper-lower))
}

// Summary holds Kayenta's metadata statistics of one preprocessed series.
type Summary struct {
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
	Std   float64 `json:"std"`
	Count int     `json:"count"`
}

// Summarize computes Kayenta's DescriptiveStatistics.summary: min, max, commons-math two-pass mean,
// sample standard deviation (n-1 denominator, commons-math's corrected two-pass variance; 0 for one
// value) and count. An empty series gives all zeros. NaN values are skipped by min and max (as
// commons-math does) but make mean and std NaN; the judge removes or replaces NaN first.
func Summarize(values []float64) Summary {
	if len(values) == 0 {
		return Summary{}
	}
	m := Mean(values)
	return Summary{
		Min:   commonsMin(values),
		Max:   commonsMax(values),
		Mean:  m,
		Std:   math.Sqrt(variance(values, m, true)),
		Count: len(values),
	}
}

// Mean is commons-math's two-pass mean: xbar = sum/n, then xbar + sum(x - xbar)/n. It returns NaN for
// no values (commons-math's StatUtils.mean; Summarize reports 0 instead, as Kayenta does).
func Mean(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	n := float64(len(values))
	var sum float64
	for _, v := range values {
		sum += v
	}
	xbar := sum / n
	var corr float64
	for _, v := range values {
		corr += v - xbar
	}
	return xbar + corr/n
}

// variance is commons-math's Variance.evaluate(values, mean): (sum(d^2) - sum(d)^2/n) / (n-1) for the
// bias-corrected (sample) variance, / n for the population variance; 0 for one value, NaN for none.
func variance(values []float64, mean float64, biasCorrected bool) float64 {
	switch len(values) {
	case 0:
		return math.NaN()
	case 1:
		return 0
	}
	var accum, accum2 float64
	for _, v := range values {
		dev := v - mean
		accum += float64(dev * dev)
		accum2 += dev
	}
	n := float64(len(values))
	if biasCorrected {
		return (accum - float64(accum2*accum2)/n) / (n - 1.0)
	}
	return (accum - float64(accum2*accum2)/n) / n
}

// commonsMin is commons-math's Min: NaN values are skipped unless all are NaN.
func commonsMin(values []float64) float64 {
	m := values[0]
	for _, v := range values {
		if !math.IsNaN(v) {
			if !(m < v) {
				m = v
			}
		}
	}
	return m
}

// commonsMax is commons-math's Max: NaN values are skipped unless all are NaN.
func commonsMax(values []float64) float64 {
	m := values[0]
	for _, v := range values {
		if !math.IsNaN(v) {
			if !(m > v) {
				m = v
			}
		}
	}
	return m
}

// RemoveNaN returns a new slice with the values of values that are not NaN (Kayenta's default
// nanStrategy); ±Inf are kept. values is not modified.
func RemoveNaN(values []float64) []float64 {
	out := make([]float64, 0, len(values))
	for _, v := range values {
		if !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	return out
}

// ReplaceNaN returns a copy of values with every NaN replaced by with (Kayenta's nanStrategy
// "replace" uses 0).
func ReplaceNaN(values []float64, with float64) []float64 {
	out := make([]float64, len(values))
	for i, v := range values {
		if math.IsNaN(v) {
			v = with
		}
		out[i] = v
	}
	return out
}
