package analysis

import "math"

// MeanRatio is Kayenta's default effect size: mean(experiment) / mean(control) with commons-math
// two-pass means, NaN if either mean is exactly 0 (or a sample is empty). For negative-valued metrics
// an increase gives a ratio below 1.
func MeanRatio(control, experiment []float64) float64 {
	c, e := Mean(control), Mean(experiment)
	if c == 0 || e == 0 {
		return math.NaN()
	}
	return e / c
}

// MeanRatioSummary is MeanRatio on summaries (Kayenta's meanRatio(MetricStatistics, ...)); empty
// series have mean 0 there, hence NaN.
func MeanRatioSummary(control, experiment Summary) float64 {
	if control.Mean == 0 || experiment.Mean == 0 {
		return math.NaN()
	}
	return experiment.Mean / control.Mean
}

// CLES is the common-language effect size P(experiment > control) + P(tie)/2, computed as Kayenta does
// from the average ranks of experiment ++ control: (2*r1 - m(m+1)) / (2nm) with r1 the experiment's rank
// sum, m = len(experiment), n = len(control). NaN if a sample is empty. Kayenta multiplies m(m+1) and
// 2nm as 32-bit integers, which overflows beyond n*m ~ 1.07e9 or m > 46340; this function computes the
// intended value there instead (identical below those sizes).
func CLES(control, experiment []float64) float64 {
	m, n := len(experiment), len(control)
	if m == 0 || n == 0 {
		return math.NaN()
	}
	twoU, _ := newRanker(experiment, control, false).rankStat(0)
	return float64(twoU) / float64(2*int64(n)*int64(m))
}

// CohenD is Cohen's d with a pooled standard deviation, as Kayenta's EffectSizes.cohenD on the two
// summaries: |mean_e - mean_c| / sqrt(((n_e-1)s_e^2 + (n_c-1)s_c^2) / (n_c + n_e - 2)). Kayenta does not
// use it in the judge.
func CohenD(control, experiment []float64) float64 {
	c, e := Summarize(control), Summarize(experiment)
	pooled := math.Sqrt((float64(float64(e.Count-1)*(e.Std*e.Std)) + float64(float64(c.Count-1)*(c.Std*c.Std))) /
		float64(c.Count+e.Count-2))
	return math.Abs(e.Mean-c.Mean) / pooled
}
