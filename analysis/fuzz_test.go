package analysis

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// fuzzValues turns fuzz bytes into a sample that often has ties, signed zeros and extreme values:
// one value per byte, a small grid of numbers for most bytes and special values for the rest, scaled
// and shifted by the fuzzer's floats.
func fuzzValues(b []byte, scale, shift float64) []float64 {
	special := []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), math.MaxFloat64,
		-math.MaxFloat64, math.SmallestNonzeroFloat64, 1e16, 1e16 + 2, 0.1, 0.2, 0.3}
	if len(b) > 64 {
		b = b[:64]
	}
	v := make([]float64, len(b))
	for i, c := range b {
		if int(c) >= 256-len(special) {
			v[i] = special[int(c)-(256-len(special))]
			continue
		}
		v[i] = float64(int(c)%32-8)*scale + shift
	}
	return v
}

func allFinite(v []float64) bool {
	for _, f := range v {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
	}
	return true
}

func FuzzMannWhitney(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4}, []byte{10, 20, 30, 40}, 1.0, 0.0, uint8(98))
	f.Add([]byte{5}, []byte{7}, 0.1, 10.0, uint8(98))
	f.Add([]byte{0, 0, 0, 9}, []byte{0, 0, 1}, 1e-6, 0.0333, uint8(95))
	f.Add([]byte{250, 251, 3}, []byte{3, 4, 255}, 1.0, 0.0, uint8(50))
	f.Add([]byte{247, 247, 1}, []byte{248, 2}, 3.0, -1.0, uint8(98))
	f.Fuzz(func(t *testing.T, bx, by []byte, scale, shift float64, confPct uint8) {
		x, y := fuzzValues(bx, scale, shift), fuzzValues(by, scale, shift)
		conf := float64(confPct%99+1) / 100 // 0.01 .. 0.99
		got, err := MannWhitney(x, y, conf)
		switch {
		case len(x) == 0 || len(y) == 0:
			if !errors.Is(err, ErrTooFewSamples) {
				t.Fatalf("empty sample: %v", err)
			}
			return
		case err != nil && !errors.Is(err, ErrAllTied):
			t.Fatalf("unexpected error: %v", err)
		}
		// The fast merge must agree with ranking the concatenation literally, bit for bit.
		want, werr := naiveMannWhitney(x, y, conf)
		if (err == nil) != (werr == nil) {
			t.Fatalf("err %v, full ranking err %v", err, werr)
		}
		if err != nil {
			return
		}
		if !sameFloat(got.Lower, want.Lower) || !sameFloat(got.Upper, want.Upper) || !sameFloat(got.Estimate, want.Estimate) {
			t.Fatalf("%+v, full ranking %+v\nx=%v\ny=%v", got, want, x, y)
		}
		if allFinite(x) && allFinite(y) {
			muMin, muMax := slices.Min(x)-slices.Max(y), slices.Max(x)-slices.Min(y)
			if math.IsInf(muMin, 0) || math.IsInf(muMax, 0) {
				return
			}
			for _, b := range []float64{got.Lower, got.Upper, got.Estimate} {
				if !(b >= muMin && b <= muMax) {
					t.Fatalf("%+v outside [muMin, muMax] = [%v, %v]\nx=%v\ny=%v", got, muMin, muMax, x, y)
				}
			}
			p, err := MannWhitneyPValue(x, y)
			if err == nil && !(p >= 0 && p <= 1) {
				t.Fatalf("p = %v", p)
			}
		}
	})
}

func FuzzPercentile(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5}, 1.0, 0.0, 50.0)
	f.Add([]byte{9}, 1.0, 0.0, 100.0)
	f.Add([]byte{244, 3, 3, 3}, 0.5, 2.0, 1.0)
	f.Add([]byte{}, 1.0, 0.0, 25.0)
	f.Fuzz(func(t *testing.T, b []byte, scale, shift, p float64) {
		v := fuzzValues(b, scale, shift)
		got := Percentile(v, p)
		all := Percentiles(v, p, 1, 25, 50, 75, 99, 100)
		if !sameFloat(got, all[0]) {
			t.Fatalf("Percentile %v != Percentiles %v", got, all[0])
		}
		flags := IQROutliers(v, 1.5, true)
		if len(flags) != len(v) || len(KSigmaOutliers(v, 3)) != len(v) {
			t.Fatal("detector output length differs from input")
		}
		if len(v) != 1 && !(p > 0 && p <= 100) && !math.IsNaN(got) {
			t.Fatalf("p = %v outside (0, 100] gave %v, want NaN", p, got)
		}
		clean := RemoveNaN(v)
		if len(clean) < 2 || len(clean) != len(v) || !(p > 0 && p <= 100) {
			return
		}
		lo, hi := slices.Min(clean), slices.Max(clean)
		if math.IsInf(hi-lo, 0) || math.IsNaN(hi-lo) {
			return // interpolation across an infinite range is not bounded
		}
		slack := 1e-12 * math.Max(math.Abs(lo), math.Abs(hi))
		for i, q := range all {
			if !(q >= lo-slack && q <= hi+slack) {
				t.Fatalf("percentile #%d = %v outside [%v, %v] of %v", i, q, lo, hi, v)
			}
		}
		// Increasing p never lowers the estimate (up to rounding of the interpolation).
		for i := 2; i < len(all); i++ {
			if all[i] < all[i-1]-slack {
				t.Fatalf("percentiles not monotone: %v", all[1:])
			}
		}
		if got := all[len(all)-1]; got != hi {
			t.Fatalf("100th percentile %v, max %v", got, hi)
		}
	})
}
