package judge

import (
	"fmt"
	"math"
	"slices"

	"github.com/canaryctl/canaryctl/analysis"
)

// Classification is a metric's verdict, serialised with Kayenta's labels.
type Classification string

// Metric classifications (Kayenta has no "NodataFailure"; it is NodataFailMetric).
const (
	Pass             Classification = "Pass"
	High             Classification = "High"
	Low              Classification = "Low"
	Nodata           Classification = "Nodata"
	NodataFailMetric Classification = "NodataFailMetric"
	Error            Classification = "Error"
)

// The judge's hard-coded classifier parameters (NetflixACAJudge.scala; the configuration properties of
// the same name are never read by Kayenta).
const (
	Tolerance = 0.25 // the CI must clear ±Tolerance·|estimate|
	ConfLevel = 0.98 // confidence level of the Mann-Whitney interval
)

// Stage says how far the classifier got for a metric.
type Stage string

// Classifier stages, in the order of Kayenta's decision tree.
const (
	StageNoData      Stage = "nodata"       // canary or baseline had no data after preprocessing
	StageIdentical   Stage = "identical"    // both samples hold the same values
	StageSingleValue Stage = "single-value" // every value of both samples is the same number
	StageCompared    Stage = "compared"     // Mann-Whitney comparison ran
	StageError       Stage = "error"        // the comparison failed (classification Error)
)

// Explanation is why a metric got its classification: the classifier's internals, for reports. It is
// not part of Kayenta's JSON. Interval values are shifts canary − baseline after preprocessing (and
// after the noise Kayenta adds when both samples are constant).
type Explanation struct {
	Stage           Stage
	CanaryCount     int // data points after preprocessing
	BaselineCount   int
	NoiseAdded      bool    // both samples were constant: Kayenta's Gaussian noise was added
	CILower         float64 // Mann-Whitney confidence interval (ConfLevel) of the shift
	CIUpper         float64
	Estimate        float64 // the shift estimate
	Bound           float64 // Tolerance·|Estimate|: High needs CILower > Bound, Low needs CIUpper < −Bound
	Ratio           float64 // mean(canary)/mean(baseline); NaN if a mean is 0
	EffectMeasure   EffectMeasure
	Effect          float64 // the effect size that gates High/Low (Ratio for meanRatio)
	CriticalOverlay bool    // the metric is critical and the critical effect gate was evaluated
	Err             error   // StageError: what failed
}

// NormalSource draws standard normal numbers; *math/rand/v2.Rand satisfies it. Kayenta draws from an
// unseeded scala.util.Random when both samples are constant.
type NormalSource interface{ NormFloat64() float64 }

// classifierParams are MannWhitneyClassifier's inputs besides the data.
type classifierParams struct {
	name          string
	tolerance     float64
	confLevel     float64
	analysis      MetricAnalysis // direction, nanStrategy, critical, mustHaveData, effect size settings
	canaryLabel   string         // "Canary" in the judge (used in the "identical" reason)
	baselineLabel string
}

// classification is MannWhitneyClassifier's result.
type classification struct {
	label     Classification
	reason    *string
	critical  bool
	deviation float64 // resultMetadata.ratio
	why       Explanation
}

func strp(s string) *string { return &s }

// classify is Kayenta's MannWhitneyClassifier.classify on preprocessed samples (ALGORITHM §5-§6). An
// error means the comparison threw (the judge reports Error); it carries the partial explanation.
func classify(p classifierParams, experiment, control []float64, noise NormalSource) (classification, error) {
	a := p.analysis
	why := Explanation{CanaryCount: len(experiment), BaselineCount: len(control), EffectMeasure: a.EffectMeasure,
		CILower: math.NaN(), CIUpper: math.NaN(), Estimate: math.NaN(), Bound: math.NaN(), Ratio: math.NaN(), Effect: math.NaN()}

	// 1. No data.
	if len(experiment) == 0 || len(control) == 0 {
		why.Stage = StageNoData
		if a.NaNStrategy == NaNReplace {
			return classification{label: Pass, deviation: 1, why: why}, nil
		}
		reason := strp("Missing data for " + p.name)
		if a.MustHaveData && !a.Critical {
			return classification{label: NodataFailMetric, reason: reason, deviation: 1, why: why}, nil
		}
		return classification{label: Nodata, reason: reason, critical: a.Critical, deviation: 1, why: why}, nil
	}

	// 2. Identical samples.
	if identical(experiment, control) {
		why.Stage = StageIdentical
		reason := fmt.Sprintf("The %s and %s data are identical", p.canaryLabel, p.baselineLabel)
		return classification{label: Pass, reason: &reason, deviation: 1, why: why}, nil
	}

	// 3. A single distinct value across both samples.
	if distinct(experiment) == 1 && distinct(control) == 1 && experiment[0] == control[0] {
		why.Stage = StageSingleValue
		return classification{label: Pass, deviation: 1, why: why}, nil
	}

	// 4. Compare.
	x, y := experiment, control
	if distinct(x) == 1 && distinct(y) == 1 {
		x, y = addNoise(x, noise), addNoise(y, noise)
		why.NoiseAdded = true
	}
	ci, err := analysis.MannWhitney(x, y, p.confLevel)
	if err != nil {
		why.Stage = StageError
		why.Err = err
		return classification{why: why}, fmt.Errorf("classify %s: %w", p.name, err)
	}
	why.Stage = StageCompared
	why.CILower, why.CIUpper, why.Estimate = ci.Lower, ci.Upper, ci.Estimate
	deviation := analysis.MeanRatio(y, x)
	effect := deviation
	if a.EffectMeasure == CLES {
		effect = analysis.CLES(y, x)
	}
	bound := p.tolerance * math.Abs(ci.Estimate)
	why.Ratio, why.Effect, why.Bound = deviation, effect, bound

	isHigh := (a.Direction == Increase || a.Direction == Either) && ci.Lower > bound &&
		(math.IsNaN(effect) || effect >= a.AllowedIncrease)
	isLow := (a.Direction == Decrease || a.Direction == Either) && ci.Upper < -bound &&
		(math.IsNaN(effect) || effect <= a.AllowedDecrease)
	res := classification{label: Pass, deviation: deviation, why: why}
	switch {
	case isHigh:
		res.label, res.reason = High, strp(p.name+" was classified as High")
	case isLow:
		res.label, res.reason = Low, strp(p.name+" was classified as Low")
	}

	// 5. Critical overlay.
	if a.Critical {
		res.why.CriticalOverlay = true
		switch {
		case res.label == High && (math.IsNaN(effect) || effect >= a.CriticalIncrease):
			res.critical, res.reason = true, strp("The metric "+p.name+" was classified as High (Critical)")
		case res.label == Low && (math.IsNaN(effect) || effect <= a.CriticalDecrease):
			res.critical, res.reason = true, strp("The metric "+p.name+" was classified as Low (Critical)")
		}
	}
	return res, nil
}

// identical: the sorted samples are equal element-wise (Kayenta compares sorted arrays).
func identical(x, y []float64) bool {
	if len(x) != len(y) {
		return false
	}
	sx, sy := slices.Clone(x), slices.Clone(y)
	slices.Sort(sx)
	slices.Sort(sy)
	for i := range sx {
		if sx[i] != sy[i] {
			return false
		}
	}
	return true
}

// distinct counts distinct values (== equality; NaN never reaches the classifier).
func distinct(v []float64) int {
	s := slices.Clone(v)
	slices.Sort(s)
	n := 0
	for i := range s {
		if i == 0 || s[i] != s[i-1] {
			n++
		}
	}
	return n
}

// addNoise returns v[i] + N(0,1)·(v0·1e-5) for each i (v constant), as Kayenta does when both samples
// are constant so that the rank statistic has variance. A 0 constant gets no noise.
func addNoise(v []float64, noise NormalSource) []float64 {
	out := make([]float64, len(v))
	scale := v[0] * 1e-5
	for i, x := range v {
		out[i] = x + noise.NormFloat64()*scale
	}
	return out
}

// errClassification is the judge's handling of a classifier exception (ALGORITHM §9).
func errClassification(why Explanation, err error) classification {
	why.Stage = StageError
	if why.Err == nil {
		why.Err = err
	}
	return classification{label: Error, reason: strp("Metric Classification Failed"), deviation: math.NaN(), why: why}
}
