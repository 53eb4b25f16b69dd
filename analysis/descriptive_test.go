package analysis

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	tests := []struct {
		name   string
		values []float64
		p      float64
		want   float64
	}{
		{"median of even count interpolates", []float64{4, 1, 3, 2}, 50, 2.5},
		{"R-7 position 1 + (n-1)p", []float64{10, 20, 30, 40, 50}, 90, 46},
		{"p = 100 is the maximum", []float64{3, 9, 1}, 100, 9},
		{"tiny p interpolates from the minimum", []float64{3, 9, 1}, 1e-9, 1 + 2*(1e-9/100)*2},
		{"single value returned as is", []float64{7}, 42, 7},
		{"single NaN returned as is", []float64{nan}, 42, nan},
		{"NaN values are ignored", []float64{nan, 1, nan, 3}, 50, 2},
		{"only NaN values", []float64{nan, nan}, 50, nan},
		{"empty", nil, 50, nan},
		{"p = 0 is invalid", []float64{1, 2}, 0, nan},
		{"p above 100 is invalid", []float64{1, 2}, 100.5, nan},
		{"NaN p is invalid", []float64{1, 2}, nan, nan},
		{"infinity kept", []float64{1, math.Inf(1)}, 100, math.Inf(1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Percentile(tc.values, tc.p); !closeRel(got, tc.want, 1e-15) {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.values, tc.p, got, tc.want)
			}
		})
	}
}

func TestPercentilesSortsOnceWithoutTouchingInput(t *testing.T) {
	t.Parallel()
	v := []float64{5, 1, 4, 2, 3}
	got := Percentiles(v, 25, 50, 75, 100)
	if want := []float64{2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("Percentiles = %v, want %v", got, want)
	}
	if !slices.Equal(v, []float64{5, 1, 4, 2, 3}) {
		t.Fatalf("input modified: %v", v)
	}
	if got := Percentiles(v); len(got) != 0 {
		t.Fatalf("no p: %v", got)
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []float64
		want   Summary
	}{
		{"empty is all zeros", nil, Summary{}},
		{"one value has std 0", []float64{4}, Summary{Min: 4, Max: 4, Mean: 4, Std: 0, Count: 1}},
		// Kayenta StatisticSuite "Summary Statistics: List": std 4.929503017546495.
		{"sample std", []float64{1, 1, 1, 10, 10, 10}, Summary{Min: 1, Max: 10, Mean: 5.5, Std: 4.929503017546495, Count: 6}},
		{"negative values", []float64{-3, -1, -2}, Summary{Min: -3, Max: -1, Mean: -2, Std: 1, Count: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Summarize(tc.values); got != tc.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tc.values, got, tc.want)
			}
		})
	}
}

func TestSummarizeNaN(t *testing.T) {
	t.Parallel()
	// commons-math Min/Max skip NaN; mean and variance propagate it.
	got := Summarize([]float64{math.NaN(), 2, 1})
	if got.Min != 1 || got.Max != 2 || !math.IsNaN(got.Mean) || !math.IsNaN(got.Std) || got.Count != 3 {
		t.Fatalf("Summarize with NaN = %+v", got)
	}
}

func TestMeanTwoPass(t *testing.T) {
	t.Parallel()
	if !math.IsNaN(Mean(nil)) {
		t.Error("Mean(nil) should be NaN (commons-math StatUtils.mean)")
	}
	// The correction pass recovers what the naive sum/n loses: 1e16 + 1 + 1 - 1e16 ... style data.
	v := []float64{1e16, 1, 1, 1, -1e16}
	naive := (v[0] + v[1] + v[2] + v[3] + v[4]) / 5
	xbar := naive
	var corr float64
	for _, f := range v {
		corr += f - xbar
	}
	if got, want := Mean(v), xbar+corr/5; got != want {
		t.Fatalf("Mean = %v, want two-pass %v", got, want)
	}
}

func TestNaNTransforms(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	in := []float64{nan, 1, math.Inf(-1), nan, 2}
	if got := RemoveNaN(in); !slices.Equal(got, []float64{1, math.Inf(-1), 2}) {
		t.Errorf("RemoveNaN = %v", got)
	}
	if got := ReplaceNaN(in, 0); !slices.Equal(got, []float64{0, 1, math.Inf(-1), 0, 2}) {
		t.Errorf("ReplaceNaN = %v", got)
	}
	if !math.IsNaN(in[0]) || !math.IsNaN(in[3]) {
		t.Error("input modified")
	}
	if got := RemoveNaN(nil); len(got) != 0 {
		t.Errorf("RemoveNaN(nil) = %v", got)
	}
	// Without NaN the result is still a copy, so callers may modify it.
	clean := []float64{1, 2}
	out := RemoveNaN(clean)
	out[0] = 99
	if clean[0] != 1 {
		t.Error("RemoveNaN returned its input's backing array")
	}
}

func TestIQROutliers(t *testing.T) {
	t.Parallel()
	v := []float64{21, 23, 24, 25, 50, 29, 23, 21} // Kayenta DetectorSuite "IQR Detection"
	want := []bool{false, false, false, false, true, false, false, false}
	if got := IQROutliers(v, 1.5, false); !slices.Equal(got, want) {
		t.Errorf("IQROutliers = %v, want %v", got, want)
	}
	// With reduceSensitivity the fences widen to at least p1/p99: p99 = 48.53 still leaves 50 out,
	// but a factor that puts the IQR fence below p99 no longer flags 48.
	v2 := []float64{21, 23, 24, 25, 48, 29, 23, 21, 50}
	if got := IQROutliers(v2, 1.5, false); !got[4] {
		t.Errorf("48 should be an outlier without reduced sensitivity: %v", got)
	}
	if got := IQROutliers(v2, 1.5, true); got[4] {
		t.Errorf("48 is below p99 and must be kept with reduced sensitivity: %v", got)
	}
	if got := IQROutliers(nil, 1.5, true); len(got) != 0 {
		t.Errorf("empty: %v", got)
	}
}

func TestRemoveOutliersIQR(t *testing.T) {
	t.Parallel()
	for _, f := range []float64{0, -1, math.NaN()} {
		if _, err := RemoveOutliersIQR([]float64{1, 2, 3}, f); !errors.Is(err, ErrInvalidParameter) {
			t.Errorf("factor %v: err %v, want ErrInvalidParameter", f, err)
		}
	}
	got, err := RemoveOutliersIQR([]float64{1, 2, 3, 2, 1, 2, 3, 1000}, 3)
	if err != nil {
		t.Fatal(err)
	}
	// p99 of these 8 values is 930.07 with R-7, so 1000 lies above both fences and is dropped.
	if !slices.Equal(got, []float64{1, 2, 3, 2, 1, 2, 3}) {
		t.Errorf("RemoveOutliersIQR = %v", got)
	}
}

func TestKSigmaOutliers(t *testing.T) {
	t.Parallel()
	v := []float64{1, 1, 1, 1, 1, 20, 1, 1, 1, 1, 1}
	got := KSigmaOutliers(v, 3)
	for i, o := range got {
		if o != (i == 5) {
			t.Fatalf("KSigmaOutliers = %v", got)
		}
	}
	if got := KSigmaOutliers([]float64{5, 5, 5}, 1); slices.Contains(got, true) {
		t.Errorf("constant data has no outliers: %v", got)
	}
}

func TestEffectSizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		got, want   float64
		relTolrance float64
	}{
		{"mean ratio", MeanRatio([]float64{1, 1}, []float64{2, 4}), 3, 0},
		{"mean ratio zero control", MeanRatio([]float64{-1, 1}, []float64{2}), math.NaN(), 0},
		{"mean ratio zero experiment", MeanRatio([]float64{1}, []float64{0, 0}), math.NaN(), 0},
		{"mean ratio empty", MeanRatio(nil, []float64{1}), math.NaN(), 0},
		{"mean ratio negative metric inverts", MeanRatio([]float64{-10}, []float64{-20}), 2, 0},
		{"summary mean ratio of empty", MeanRatioSummary(Summarize(nil), Summarize([]float64{1})), math.NaN(), 0},
		{"cles all greater", CLES([]float64{1, 2}, []float64{3, 4, 5}), 1, 0},
		{"cles all smaller", CLES([]float64{3, 4}, []float64{1}), 0, 0},
		{"cles ties count half", CLES([]float64{1, 2}, []float64{2}), 0.75, 0},
		{"cles empty", CLES(nil, []float64{1}), math.NaN(), 0},
		// Kayenta StatisticSuite "Effect Size: Cohen's D": 3.038218101251.
		{"cohen d", CohenD([]float64{1, 1, 1, 2, 2, 2}, []float64{5, 5, 5, 10, 10, 10}), 3.038218101251, 1e-12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !closeRel(tc.got, tc.want, tc.relTolrance) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestNormalQuantile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    float64
		want float64
	}{
		// ALGORITHM.md §7: the exact doubles Kayenta uses for conf 0.98 and 0.95.
		{0.01, -0x1.29c5c4630ff0fp+1},
		{0.025, -0x1.f5c0331eeff84p+0},
		{0.5, 0},
		{0, math.Inf(-1)},
		{1, math.Inf(1)},
		{-0.1, math.NaN()},
		{1.1, math.NaN()},
		{math.NaN(), math.NaN()},
	}
	for _, tc := range tests {
		if got := NormalQuantile(tc.p); !sameFloat(got, tc.want) {
			t.Errorf("NormalQuantile(%v) = %v (%x), want %v", tc.p, got, math.Float64bits(got), tc.want)
		}
	}
	// Round trip through Phi (erfc) on all three polynomial branches. commons-math forms 2p-1 first,
	// which costs ~1e-16/p of relative accuracy, hence the p-dependent tolerance.
	for _, p := range []float64{1e-12, 1e-7, 1e-4, 0.001, 0.2, 0.4, 0.6, 0.999} {
		q := NormalQuantile(p)
		tol := 1e-14 + 4e-16/math.Min(p, 1-p)
		if back := 0.5 * math.Erfc(-q/math.Sqrt2); !closeRel(back, p, tol) {
			t.Errorf("Phi(NormalQuantile(%v)) = %v (tolerance %g)", p, back, tol)
		}
	}
	// Below ~1e-17, 2p-1 rounds to -1 and commons-math (so Kayenta) returns -Inf.
	if got := NormalQuantile(1e-20); !math.IsInf(got, -1) {
		t.Errorf("NormalQuantile(1e-20) = %v, want -Inf like commons-math", got)
	}
	for _, p := range []float64{0.25, 0.125, 0.0625} {
		// 2p-1 is exact for p and 1-p, and erfInv is odd, so the results mirror exactly.
		if NormalQuantile(p) != -NormalQuantile(1-p) {
			t.Errorf("NormalQuantile not symmetric: %v vs %v", NormalQuantile(p), NormalQuantile(1-p))
		}
	}
}
