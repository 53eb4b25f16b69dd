package analysis

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// sortedPercentiles is Percentiles as it was: sort the NaN-free copy, then r7.
func sortedPercentiles(values []float64, ps ...float64) []float64 {
	out := make([]float64, len(ps))
	s := RemoveNaN(values)
	slices.Sort(s)
	for i, p := range ps {
		switch {
		case !(p > 0 && p <= 100) || len(values) == 0:
			out[i] = math.NaN()
		case len(values) == 1:
			out[i] = values[0]
		default:
			out[i] = r7(s, p)
		}
	}
	return out
}

// TestPercentilesSelectMatchesSort: selecting the order statistics gives exactly what sorting gave,
// on inputs with ties (whole milliseconds), NaN, infinities, sorted and reversed runs, every size
// around the insertion-sort cut-off, and the percentiles Kayenta and the engine ask for.
func TestPercentilesSelectMatchesSort(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	ps := []float64{50, 99, 75, 25, 1, 0.001, 100, 99.9, 33.3, 0, -1, math.NaN()}
	gens := map[string]func(n int) []float64{
		"lognormal": func(n int) []float64 {
			v := make([]float64, n)
			for i := range v {
				v[i] = 80 * math.Exp(0.45*rng.NormFloat64())
			}
			return v
		},
		"whole ms": func(n int) []float64 {
			v := make([]float64, n)
			for i := range v {
				v[i] = math.Round(80 * math.Exp(0.45*rng.NormFloat64()))
			}
			return v
		},
		"few values": func(n int) []float64 {
			v := make([]float64, n)
			for i := range v {
				v[i] = float64(rng.IntN(3))
			}
			return v
		},
		"sorted": func(n int) []float64 {
			v := make([]float64, n)
			for i := range v {
				v[i] = float64(i)
			}
			return v
		},
		"reversed": func(n int) []float64 {
			v := make([]float64, n)
			for i := range v {
				v[i] = float64(n - i)
			}
			return v
		},
		"nan and inf": func(n int) []float64 {
			v := make([]float64, n)
			for i := range v {
				switch rng.IntN(6) {
				case 0:
					v[i] = math.NaN()
				case 1:
					v[i] = math.Inf(1)
				case 2:
					v[i] = math.Inf(-1)
				default:
					v[i] = rng.NormFloat64()
				}
			}
			return v
		},
	}
	for name, gen := range gens {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{0, 1, 2, 3, 15, 16, 17, 18, 33, 100, 1000, 20000} {
				v := gen(n)
				in := slices.Clone(v)
				got, want := Percentiles(v, ps...), sortedPercentiles(v, ps...)
				for i := range ps {
					if got[i] != want[i] && !(math.IsNaN(got[i]) && math.IsNaN(want[i])) {
						t.Errorf("n=%d p=%v: %v, sorting gives %v", n, ps[i], got[i], want[i])
					}
				}
				if !slices.EqualFunc(v, in, func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }) {
					t.Fatalf("n=%d: the input was modified", n)
				}
			}
		})
	}
}

// TestSelectRanksPlacesEveryRank checks the invariant directly: every asked rank holds the sorted
// value, with no larger value before it and no smaller one after it.
func TestSelectRanksPlacesEveryRank(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 5))
	for trial := range 200 {
		n := 1 + rng.IntN(3000)
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(rng.IntN(1 + trial*10))
		}
		ranks := []int{rng.IntN(n), rng.IntN(n), n - 1, 0, rng.IntN(n)}
		s := slices.Clone(v)
		selectRanks(s, ranks)
		sorted := slices.Clone(v)
		slices.Sort(sorted)
		for _, k := range ranks {
			if s[k] != sorted[k] {
				t.Fatalf("trial %d n=%d rank %d: %v, sorted %v", trial, n, k, s[k], sorted[k])
			}
			for i := range s {
				if i < k && s[i] > s[k] || i > k && s[i] < s[k] {
					t.Fatalf("trial %d n=%d rank %d: s[%d]=%v on the wrong side of %v", trial, n, k, i, s[i], s[k])
				}
			}
		}
	}
}
