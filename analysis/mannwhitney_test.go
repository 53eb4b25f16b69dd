package analysis

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// sampleKinds generate the shapes of data the merge-based ranker must handle exactly like a full
// re-ranking: continuous values, heavy ties, signed zeros, infinities, NaN, and magnitudes where x - d
// rounds distinct values together.
var sampleKinds = []struct {
	name string
	gen  func(r *rand.Rand, n int) []float64
}{
	{"continuous", func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = r.NormFloat64()*10 + 50
		}
		return v
	}},
	{"heavy-ties", func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(r.IntN(5))
		}
		return v
	}},
	{"zero-heavy", func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			if r.IntN(4) == 0 {
				v[i] = r.ExpFloat64()
			}
		}
		return v
	}},
	{"signed-zeros", func(r *rand.Rand, n int) []float64 {
		choices := []float64{math.Copysign(0, -1), 0, 1, -1, 0.5}
		v := make([]float64, n)
		for i := range v {
			v[i] = choices[r.IntN(len(choices))]
		}
		return v
	}},
	{"non-finite", func(r *rand.Rand, n int) []float64 {
		choices := []float64{math.Inf(1), math.Inf(-1), math.NaN(), 1, 2, 3}
		v := make([]float64, n)
		for i := range v {
			v[i] = choices[r.IntN(len(choices))]
		}
		return v
	}},
	{"rounding-collapse", func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = 1e16 + float64(r.IntN(8)) // spacing 2 at 1e16: x - d rounds neighbours together
		}
		return v
	}},
	{"tiny-scale", func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = 0.0333 + r.NormFloat64()*1e-6
		}
		return v
	}},
}

// shifts returns the shifts worth probing for x and y: the CI bracket, exact pairwise differences
// (where ties between x - d and y appear), points next to them, and non-finite shifts.
func shifts(r *rand.Rand, x, y []float64) []float64 {
	d := []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), 1e16, -3.5}
	if len(x) > 0 && len(y) > 0 {
		d = append(d, scalaMin(x)-scalaMax(y), scalaMax(x)-scalaMin(y))
	}
	for range 12 {
		if len(x) == 0 || len(y) == 0 {
			break
		}
		diff := x[r.IntN(len(x))] - y[r.IntN(len(y))]
		d = append(d, diff, math.Nextafter(diff, math.Inf(1)), math.Nextafter(diff, math.Inf(-1)), diff+r.NormFloat64())
	}
	return d
}

func TestWilcoxonDiffMatchesFullRanking(t *testing.T) {
	t.Parallel()
	for _, kx := range sampleKinds {
		for _, ky := range sampleKinds {
			t.Run(kx.name+"/"+ky.name, func(t *testing.T) {
				t.Parallel()
				r := rand.New(rand.NewPCG(7, uint64(len(kx.name)*131+len(ky.name))))
				for trial := range 4 {
					x, y := kx.gen(r, 1+r.IntN(40)), ky.gen(r, 1+r.IntN(40))
					w := newWilcoxon(x, y)
					for _, d := range shifts(r, x, y) {
						for _, zq := range []float64{0, -2.326347874040841} {
							got, gotErr := w.diff(d, zq)
							want, wantErr := naiveWilcoxonDiff(x, y, d, zq)
							if (gotErr != nil) != (wantErr != nil) || !sameFloat(got, want) {
								t.Fatalf("trial %d d=%v zq=%v: W = %v (err %v), full ranking %v (err %v)\nx=%v\ny=%v",
									trial, d, zq, got, gotErr, want, wantErr, x, y)
							}
						}
					}
				}
			})
		}
	}
}

func TestMannWhitneyMatchesFullRanking(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(11, 12))
	for trial := range 60 {
		kx, ky := sampleKinds[r.IntN(len(sampleKinds))], sampleKinds[r.IntN(len(sampleKinds))]
		x, y := kx.gen(r, 1+r.IntN(30)), ky.gen(r, 1+r.IntN(30))
		if r.IntN(2) == 0 { // a real shift between the samples
			s := r.NormFloat64() * 5
			for i := range x {
				x[i] += s
			}
		}
		conf := []float64{0.98, 0.95, 0.5}[r.IntN(3)]
		got, gotErr := MannWhitney(x, y, conf)
		want, wantErr := naiveMannWhitney(x, y, conf)
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("trial %d (%s vs %s): err %v, full ranking err %v", trial, kx.name, ky.name, gotErr, wantErr)
		}
		if gotErr == nil && (!sameFloat(got.Lower, want.Lower) || !sameFloat(got.Upper, want.Upper) || !sameFloat(got.Estimate, want.Estimate)) {
			t.Fatalf("trial %d (%s vs %s): %+v, full ranking %+v\nx=%v\ny=%v", trial, kx.name, ky.name, got, want, x, y)
		}
		if gotErr != nil && !errors.Is(gotErr, ErrAllTied) {
			t.Fatalf("trial %d: unexpected error %v", trial, gotErr)
		}
	}
}

// sameFloat is bit equality, with all NaNs equal.
func sameFloat(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Float64bits(a) == math.Float64bits(b)
}

func TestMannWhitneyCases(t *testing.T) {
	t.Parallel()
	neg0 := math.Copysign(0, -1)
	tests := []struct {
		name    string
		x, y    []float64
		conf    float64
		want    Interval
		wantErr error
	}{
		// Upstream MannWhitneySuite's first case (also a vector); the interval is exact here.
		{name: "upstream small shift", x: []float64{10, 20, 30, 40}, y: []float64{1, 2, 3, 4}, conf: 0.95,
			want: Interval{Lower: 6, Upper: 39, Estimate: 22.5}},
		// spinnaker/spinnaker#6278 as quoted in ALGORITHM.md: 7 of 10 canary values at 100 against a
		// baseline of ten 1s; Kayenta printed confidenceInterval0 = 6.825022991538781E-5 and
		// estimate = 98.99992904170193 (bit-for-bit here). With 8 of 10 the lower bound jumps to ~99.
		{name: "issue 6278 seven of ten", x: append(repeat(100, 7), repeat(1, 3)...), y: repeat(1, 10), conf: 0.98,
			want: Interval{Lower: 6.825022991538781e-05, Upper: 99, Estimate: 98.99992904170193}},
		{name: "issue 6278 eight of ten", x: append(repeat(100, 8), repeat(1, 2)...), y: repeat(1, 10), conf: 0.98,
			want: Interval{Lower: 98.99993164762162, Upper: 99, Estimate: 99}},
		// ALGORITHM.md §7: one value against one value within a factor of 2 is all tied at muMin.
		{name: "n1 vs n1 tied at muMin", x: []float64{12}, y: []float64{10}, conf: 0.98, wantErr: ErrAllTied},
		{name: "all identical", x: []float64{3, 3}, y: []float64{3, 3, 3}, conf: 0.98, wantErr: ErrAllTied},
		// ALGORITHM.md §7 (vector gen/edge-infinity-in-canary): an infinite canary value gives [Inf, Inf].
		// This and the next two cases were also run through commons-math 3.6.1 + Kayenta's BrentSolver
		// on the JVM (testdata/jvm_reference.json) with the same results.
		{name: "infinity in canary", x: append(seq(1, 20), math.Inf(1)), y: seq(1, 20), conf: 0.98,
			want: Interval{Lower: math.Inf(1), Upper: math.Inf(1), Estimate: math.Inf(1)}},
		{name: "infinity in small canary returns muMin", x: []float64{1, 2, math.Inf(1)}, y: []float64{1, 2, 3}, conf: 0.98,
			want: Interval{Lower: -2, Upper: math.Inf(1), Estimate: math.Inf(1)}},
		{name: "empty canary", x: nil, y: []float64{1}, conf: 0.98, wantErr: ErrTooFewSamples},
		{name: "empty baseline", x: []float64{1}, y: []float64{}, conf: 0.98, wantErr: ErrTooFewSamples},
		{name: "confidence 1", x: []float64{1, 2}, y: []float64{3, 4}, conf: 1, wantErr: ErrInvalidParameter},
		{name: "confidence NaN", x: []float64{1, 2}, y: []float64{3, 4}, conf: math.NaN(), wantErr: ErrInvalidParameter},
		// muMin = -0 - 0 = -0, and -0 - (-0) = +0 ties with the baseline's +0.
		{name: "signed zeros tie after the shift", x: []float64{neg0, neg0}, y: []float64{0, 0}, conf: 0.98, wantErr: ErrAllTied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := MannWhitney(tc.x, tc.y, tc.conf)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("MannWhitney = %+v, %v; want error %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("MannWhitney: %v", err)
			}
			naive, nerr := naiveMannWhitney(tc.x, tc.y, tc.conf)
			if nerr != nil || !sameFloat(got.Lower, naive.Lower) || !sameFloat(got.Upper, naive.Upper) || !sameFloat(got.Estimate, naive.Estimate) {
				t.Errorf("MannWhitney = %+v, full ranking %+v (%v)", got, naive, nerr)
			}
			if !sameFloat(got.Lower, tc.want.Lower) || !sameFloat(got.Upper, tc.want.Upper) || !sameFloat(got.Estimate, tc.want.Estimate) {
				t.Errorf("MannWhitney = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestMannWhitneyProperties checks invariants on seeded random data: U1 + U2 = n*m, swapping the
// samples mirrors the interval (within the root finder's 1e-4), permuting the inputs changes nothing,
// the bounds stay within [muMin, muMax], and p-values lie in [0, 1].
func TestMannWhitneyProperties(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(2026, 11))
	for trial := range 200 {
		kx, ky := sampleKinds[r.IntN(3)], sampleKinds[r.IntN(3)] // finite kinds
		x, y := kx.gen(r, 2+r.IntN(60)), ky.gen(r, 2+r.IntN(60))
		shift := r.NormFloat64() * 3
		for i := range x {
			x[i] += shift
		}
		name := fmt.Sprintf("trial %d (%s %d vs %s %d)", trial, kx.name, len(x), ky.name, len(y))

		u1, _ := newRanker(x, y, false).rankStat(0)
		u2, _ := newRanker(y, x, false).rankStat(0)
		if nm := int64(2 * len(x) * len(y)); u1+u2 != nm {
			t.Fatalf("%s: 2*U1 + 2*U2 = %d, want 2nm = %d", name, u1+u2, nm)
		}

		xy, errXY := MannWhitney(x, y, 0.98)
		yx, errYX := MannWhitney(y, x, 0.98)
		if (errXY != nil) != (errYX != nil) {
			t.Fatalf("%s: errors differ when swapped: %v / %v", name, errXY, errYX)
		}
		if errXY == nil {
			const rootTol = 2e-4 // two roots, each located to 1e-4
			if math.Abs(xy.Lower+yx.Upper) > rootTol || math.Abs(xy.Upper+yx.Lower) > rootTol {
				t.Fatalf("%s: swap does not mirror the interval: %+v vs %+v", name, xy, yx)
			}
			// The estimate solves W(d) = 0, and W is exactly 0 on a whole step when U = nm/2: any point
			// of that step is a root, so the mirrored estimate need only be a root of W(x, y) too.
			if math.Abs(xy.Estimate+yx.Estimate) > rootTol && !isRootOf(x, y, -yx.Estimate, rootTol) {
				t.Fatalf("%s: swapped estimate %v is not a root for (x, y) (estimate %v)", name, -yx.Estimate, xy.Estimate)
			}
			muMin, muMax := slices.Min(x)-slices.Max(y), slices.Max(x)-slices.Min(y)
			for _, b := range []float64{xy.Lower, xy.Upper, xy.Estimate} {
				if b < muMin || b > muMax {
					t.Fatalf("%s: %+v outside [%v, %v]", name, xy, muMin, muMax)
				}
			}
			px, py := slices.Clone(x), slices.Clone(y)
			r.Shuffle(len(px), func(i, j int) { px[i], px[j] = px[j], px[i] })
			r.Shuffle(len(py), func(i, j int) { py[i], py[j] = py[j], py[i] })
			perm, err := MannWhitney(px, py, 0.98)
			if err != nil || perm != xy {
				t.Fatalf("%s: permuted inputs give %+v (%v), want %+v", name, perm, err, xy)
			}
		}

		p, err := MannWhitneyPValue(x, y)
		if err == nil && !(p >= 0 && p <= 1) {
			t.Fatalf("%s: p = %v outside [0, 1]", name, p)
		}
		q, err2 := MannWhitneyPValue(y, x)
		if (err == nil) != (err2 == nil) || (err == nil && math.Abs(p-q) > 1e-15) {
			t.Fatalf("%s: p(x,y) = %v (%v), p(y,x) = %v (%v)", name, p, err, q, err2)
		}
	}
}

func TestMannWhitneyDoesNotModifyInputs(t *testing.T) {
	t.Parallel()
	x, y := []float64{3, 1, 2, 9}, []float64{5, 4, 0}
	cx, cy := slices.Clone(x), slices.Clone(y)
	if _, err := MannWhitney(x, y, 0.98); err != nil {
		t.Fatal(err)
	}
	if _, err := MannWhitneyPValue(x, y); err != nil {
		t.Fatal(err)
	}
	_ = Percentiles(x, 50, 99)
	_ = IQROutliers(y, 1.5, true)
	if !slices.Equal(x, cx) || !slices.Equal(y, cy) {
		t.Fatalf("inputs modified: %v %v", x, y)
	}
}

func TestMannWhitneyPValueErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		x, y []float64
		want error
	}{
		{"no finite canary", []float64{math.NaN(), math.Inf(1)}, []float64{1, 2}, ErrTooFewSamples},
		{"empty baseline", []float64{1}, nil, ErrTooFewSamples},
		{"all tied", []float64{2, 2}, []float64{2}, ErrAllTied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if p, err := MannWhitneyPValue(tc.x, tc.y); !errors.Is(err, tc.want) {
				t.Fatalf("MannWhitneyPValue = %v, %v; want %v", p, err, tc.want)
			}
		})
	}
}

func TestWilcoxonDiffErrors(t *testing.T) {
	t.Parallel()
	if _, err := WilcoxonDiff(nil, []float64{1}, 0, 0); !errors.Is(err, ErrTooFewSamples) {
		t.Errorf("empty x: %v, want ErrTooFewSamples", err)
	}
	if _, err := WilcoxonDiff([]float64{2, 2}, []float64{1}, 1, 0); !errors.Is(err, ErrAllTied) {
		t.Errorf("all tied at d=1: %v, want ErrAllTied", err)
	}
	if _, err := WilcoxonDiff([]float64{2, 2}, []float64{1}, 0, 0); err != nil {
		t.Errorf("not tied at d=0: %v", err)
	}
}

func TestZeroinIterationLimit(t *testing.T) {
	t.Parallel()
	calls := 0
	// A function that never changes sign keeps bisecting until the iteration cap; Kayenta then returns
	// the last iterate instead of failing.
	got, err := zeroin(0, 1e6, 1, 1, func(d float64) (float64, error) { calls++; return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	if calls > zeroinMaxIterations+1 {
		t.Fatalf("zeroin evaluated f %d times, cap is %d", calls, zeroinMaxIterations+1)
	}
	if math.IsNaN(got) {
		t.Fatalf("zeroin returned NaN")
	}
	stop := errors.New("stop")
	if _, err := zeroin(0, 1, -1, 1, func(float64) (float64, error) { return 0, stop }); !errors.Is(err, stop) {
		t.Fatalf("error from f not propagated: %v", err)
	}
}

// isRootOf reports whether W(x, y, d) is 0 at d or changes sign within d ± tol.
func isRootOf(x, y []float64, d, tol float64) bool {
	at, err := WilcoxonDiff(x, y, d, 0)
	if err != nil {
		return false
	}
	lo, err1 := WilcoxonDiff(x, y, d-tol, 0)
	hi, err2 := WilcoxonDiff(x, y, d+tol, 0)
	return at == 0 || (err1 == nil && err2 == nil && lo >= 0 && hi <= 0)
}

func seq(from, to int) []float64 {
	var v []float64
	for i := from; i <= to; i++ {
		v = append(v, float64(i))
	}
	return v
}

func TestWilcoxonDiffSignedZeros(t *testing.T) {
	t.Parallel()
	// Java's Double.compare ranks -0 below +0 (no tie): x ranks 1, 2 → dz = 3 - 3 - 2 = -2,
	// two tie groups of 2 give T = 12, s = sqrt(4/12 * (5 - 12/12)) and W = (-2 + 0.5)/s.
	neg0 := math.Copysign(0, -1)
	got, err := WilcoxonDiff([]float64{neg0, neg0}, []float64{0, 0}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := (-2 + 0.5) / math.Sqrt((4.0/12)*(5-12.0/12))
	if got != want {
		t.Fatalf("W = %v, want %v", got, want)
	}
	// R ranks them as ties, which the p-value follows: all tied.
	if _, err := MannWhitneyPValue([]float64{neg0, neg0}, []float64{0, 0}); !errors.Is(err, ErrAllTied) {
		t.Fatalf("p-value with signed zeros: %v, want ErrAllTied", err)
	}
}

// TestWilcoxonDiffHugeTieGroup covers samples beyond maxExactTies, where t^3 of one tie group
// (2,000,000 zeros) no longer fits the exact integer path: W must still follow Kayenta's formula. With
// one giant tie group (nx+ny+1) - T/(N(N-1)) cancels down to ~3, so the rounding of T (which in Kayenta
// depends on hash-map order) shows at ~1e-11 relative; hence the tolerance.
func TestWilcoxonDiffHugeTieGroup(t *testing.T) {
	t.Parallel()
	const zeros = 1_000_000
	x := make([]float64, zeros+1)
	x[zeros] = 1
	y := make([]float64, zeros)
	nx, ny := float64(zeros+1), float64(zeros)
	w := func(rankSum, ties float64) float64 {
		dz := rankSum - nx*(nx+1)/2 - nx*ny/2
		sigma := math.Sqrt((nx * ny / 12) * ((nx + ny + 1) - ties/((nx+ny)*(nx+ny-1))))
		return (dz - sign(dz)*0.5) / sigma
	}
	tests := []struct {
		name          string
		d             float64
		rankSum, ties float64
	}{
		// 2M zeros tie at average rank (1 + 2M)/2; the canary's 1.0 ranks last.
		{"one giant tie group", 0, zeros*(1+2.0*zeros)/2 + (2*zeros + 1), 2.0*zeros*2*zeros*2*zeros - 2*zeros},
		// x - 0.5 puts the canary zeros (ranks 1..1M) below the baseline zeros; the 0.5 ranks last.
		{"shift splits the group", 0.5, zeros*(1+zeros)/2.0 + (2*zeros + 1), 2 * (1.0*zeros*zeros*zeros - zeros)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := WilcoxonDiff(x, y, tc.d, 0)
			if err != nil {
				t.Fatal(err)
			}
			if want := w(tc.rankSum, tc.ties); !closeRel(got, want, 1e-9) {
				t.Fatalf("W(%v) = %v, want %v", tc.d, got, want)
			}
		})
	}
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}
