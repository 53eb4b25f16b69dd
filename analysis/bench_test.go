package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// latencySample returns n log-normal "latencies" in milliseconds rounded to 1 µs, so that the sample
// has ties like real histograms-free latency data, shifted by shift.
func latencySample(r *rand.Rand, n int, shift float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = math.Round((math.Exp(3+0.5*r.NormFloat64())+shift)*1000) / 1000
	}
	return v
}

func BenchmarkMannWhitney(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000, 1_000_000} {
		r := rand.New(rand.NewPCG(42, uint64(n)))
		x, y := latencySample(r, n, 0.5), latencySample(r, n, 0)
		b.Run(fmt.Sprintf("n=%s", benchName(n)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := MannWhitney(x, y, 0.98); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchName(n int) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000:
		return fmt.Sprintf("%dk", n/1_000)
	}
	return fmt.Sprint(n)
}
