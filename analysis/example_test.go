package analysis_test

import (
	"fmt"

	"github.com/canaryctl/canaryctl/analysis"
)

// The data of spinnaker/spinnaker#6278: seven of ten canary requests at 100 ms against a baseline of
// ten 1 ms requests. Kayenta's 98% interval barely excludes 0, and its tolerance check
// (lower > 0.25*|estimate|) lets the canary pass.
func ExampleMannWhitney() {
	canary := []float64{100, 100, 100, 100, 100, 100, 100, 1, 1, 1}
	baseline := []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	ci, err := analysis.MannWhitney(canary, baseline, 0.98)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("lower %.6g upper %g estimate %.10g\n", ci.Lower, ci.Upper, ci.Estimate)
	fmt.Println("high:", ci.Lower > 0.25*ci.Estimate)
	p, _ := analysis.MannWhitneyPValue(canary, baseline)
	fmt.Printf("R p-value %.4f\n", p) // R: wilcox.test(canary, baseline, exact = FALSE)$p.value = 0.001616772831
	// Output:
	// lower 6.82502e-05 upper 99 estimate 98.99992904
	// high: false
	// R p-value 0.0016
}

func ExamplePercentiles() {
	latencies := []float64{12, 15, 11, 90, 14, 13, 16, 12}
	// Same as R: quantile(latencies, c(.5, .9, .99), type = 7).
	fmt.Println(analysis.Percentiles(latencies, 50, 90, 99))
	// Output: [13.5 38.19999999999999 84.81999999999998]
}

func ExampleRemoveOutliersIQR() {
	_, err := analysis.RemoveOutliersIQR([]float64{1, 2, 3}, 0)
	fmt.Println(err)
	// Output: remove outliers: outlierFactor 0 must be greater than 0: invalid parameter
}
