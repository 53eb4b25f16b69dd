package analysis

import (
	"fmt"
	"math"
)

// IQROutliers flags the values outside Tukey's fences, as Kayenta's IQRDetector: with R-7 percentiles
// p25, p75 and iqr = p75 - p25 the fences are p25 - factor*iqr and p75 + factor*iqr; with
// reduceSensitivity (what the judge uses) they are widened to at least the 1st and 99th percentiles.
// A value is an outlier when it is strictly outside a fence. factor must be positive (Kayenta refuses
// anything else; RemoveOutliersIQR checks it). No values give no flags.
func IQROutliers(values []float64, factor float64, reduceSensitivity bool) []bool {
	out := make([]bool, len(values))
	if len(values) == 0 {
		return out
	}
	q := Percentiles(values, 75, 25, 1, 99)
	p75, p25 := q[0], q[1]
	iqr := p75 - p25
	lower := p25 - float64(factor*iqr)
	upper := p75 + float64(factor*iqr)
	if reduceSensitivity {
		lower = math.Min(q[2], lower)
		upper = math.Max(q[3], upper)
	}
	for i, v := range values {
		out[i] = v > upper || v < lower
	}
	return out
}

// KSigmaOutliers flags the values more than k population standard deviations from the mean, as
// Kayenta's KSigmaDetector (commons-math mean and population variance): |v - mean| > std*k.
func KSigmaOutliers(values []float64, k float64) []bool {
	out := make([]bool, len(values))
	if len(values) == 0 {
		return out
	}
	mean := Mean(values)
	std := math.Sqrt(variance(values, mean, false))
	for i, v := range values {
		out[i] = math.Abs(v-mean) > std*k
	}
	return out
}

// DropFlagged returns the values whose flag is false (Kayenta's Transforms.removeOutliers). flagged
// must have the same length as values.
func DropFlagged(values []float64, flagged []bool) []float64 {
	out := make([]float64, 0, len(values))
	for i, v := range values {
		if !flagged[i] {
			out = append(out, v)
		}
	}
	return out
}

// RemoveOutliersIQR is the judge's outlier removal (outliers.strategy "remove"): IQROutliers with
// reduceSensitivity, dropped. It returns ErrInvalidParameter when factor is not positive, which in
// Kayenta aborts the whole judgement.
func RemoveOutliersIQR(values []float64, factor float64) ([]float64, error) {
	if !(factor > 0) {
		return nil, fmt.Errorf("remove outliers: outlierFactor %v must be greater than 0: %w", factor, ErrInvalidParameter)
	}
	return DropFlagged(values, IQROutliers(values, factor, true)), nil
}
