package sequential

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestHistogramQuantileMatchesSorted: interleaved adds and queries (the cursor moves both ways) give
// the exact order statistic to within the 1% bin width.
func TestHistogramQuantileMatchesSorted(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	h := NewHistogram()
	var all []float64
	for i := range 10000 {
		v := 80 * math.Exp(0.8*rng.NormFloat64())
		if i > 5000 {
			v *= 3 // a shift moves the quantiles up
		}
		h.Add(v)
		all = append(all, v)
		if i%499 == 0 {
			s := slices.Clone(all)
			slices.Sort(s)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 1} {
				want := s[max(int(math.Ceil(q*float64(len(s))))-1, 0)]
				got := h.Quantile(q)
				if math.Abs(got/want-1) > 0.0101 {
					t.Fatalf("after %d values: quantile %v = %v, want %v within 1%%", i+1, q, got, want)
				}
			}
		}
	}
}

func TestHistogramEdges(t *testing.T) {
	t.Parallel()
	h := NewHistogram()
	if !math.IsNaN(h.Quantile(0.5)) || !math.IsNaN(h.ShareAbove(1)) {
		t.Error("empty histogram should give NaN")
	}
	for _, v := range []float64{math.NaN(), -1, 0, 1e-9, 1e12, math.Inf(1)} {
		h.Add(v) // clamped to the end bins, no panic
	}
	if h.N() != 6 {
		t.Errorf("N = %d", h.N())
	}
	if q := h.Quantile(1); !(q > 1e6) {
		t.Errorf("max quantile %v, want the top bin", q)
	}
	if s := h.ShareAbove(1); math.Abs(s-2.0/6) > 1e-12 { // 1e12 and +Inf
		t.Errorf("share above 1 ms = %v, want 1/3", s)
	}
}
