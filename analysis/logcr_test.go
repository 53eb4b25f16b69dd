package analysis

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestLogCR(t *testing.T) {
	t.Parallel()
	// Correctly rounded logarithms from Python's decimal module at 80 digits:
	// float(Decimal(v).ln()). The first three are where Go's math.Log is one ulp off.
	tests := []struct{ in, want float64 }{
		{0.35999999999999993, -1.0216512475319817},
		{0.39471599999999996, -0.9295887600181448},
		{0.16460400000000014, -1.8042126896978659},
		{5e-324, -744.4400719213812},
		{2.2250738585072014e-308, -708.3964185322641},
		{1e+308, 709.1962086421661},
		{0.999999999999, -9.999778782803785e-13},
		{1.0000000000000002, 2.2204460492503128e-16},
		{0.7071067811865476, -0.3465735902799726},
		{0.7071067811865475, -0.34657359027997275},
		{1.4142135623730951, 0.3465735902799727},
		{3.0, 1.0986122886681098},
		{1e-20, -46.051701859880914},
		{1, 0},
	}
	for _, tc := range tests {
		if got := logCR(tc.in); got != tc.want {
			t.Errorf("logCR(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, in := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if got, want := logCR(in), math.Log(in); !sameFloat(got, want) {
			t.Errorf("logCR(%v) = %v, want %v", in, got, want)
		}
	}
	// Never more than one ulp from math.Log (which is within one ulp of the truth).
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		v := math.Exp(r.NormFloat64() * 50)
		got, ref := logCR(v), math.Log(v)
		if d := int64(math.Float64bits(got)) - int64(math.Float64bits(ref)); d > 1 || d < -1 {
			t.Fatalf("logCR(%v) = %v, math.Log %v", v, got, ref)
		}
	}
}

func BenchmarkNormalQuantile(b *testing.B) {
	for b.Loop() {
		NormalQuantile(0.01)
	}
}
