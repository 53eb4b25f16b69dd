package sequential

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

func TestPairedConfigValidate(t *testing.T) {
	t.Parallel()
	ok := PairedConfig{Alpha: 0.01, Beta: 0.05, Margin: 0.01}
	cases := []struct {
		name  string
		mut   func(*PairedConfig)
		field string // "" = valid
	}{
		{"valid", func(*PairedConfig) {}, ""},
		{"valid with tolerance", func(c *PairedConfig) { c.Tolerance = 0.005 }, ""},
		{"alpha zero", func(c *PairedConfig) { c.Alpha = 0 }, "alpha"},
		{"alpha one", func(c *PairedConfig) { c.Alpha = 1 }, "alpha"},
		{"alpha NaN", func(c *PairedConfig) { c.Alpha = math.NaN() }, "alpha"},
		{"beta negative", func(c *PairedConfig) { c.Beta = -0.1 }, "beta"},
		{"tolerance negative", func(c *PairedConfig) { c.Tolerance = -0.01 }, "tolerance"},
		{"margin not above tolerance", func(c *PairedConfig) { c.Tolerance = 0.01 }, "margin"},
		{"margin one", func(c *PairedConfig) { c.Margin = 1 }, "margin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.mut(&c)
			_, err := NewPairedTest(c)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, ErrConfig) || !ce.InvalidInput() {
				t.Fatalf("error %v, want a ConfigError for field %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), "e.g.") {
				t.Errorf("error %q does not say how to fix it", err)
			}
		})
	}
}

// pairSource draws pair differences with P(+1) = (nu+mean)/2 and P(-1) = (nu-mean)/2.
type pairSource struct {
	rng    *rand.Rand
	pp, pm float64
}

func newPairSource(seed uint64, nu, mean float64) pairSource {
	return pairSource{rng: rand.New(rand.NewPCG(seed, 7)), pp: (nu + mean) / 2, pm: (nu - mean) / 2}
}

func (s pairSource) batch(n int) (p, z, m int64) {
	for range n {
		u := s.rng.Float64()
		switch {
		case u < s.pp:
			p++
		case u < s.pp+s.pm:
			m++
		default:
			z++
		}
	}
	return p, z, m
}

// atMostRate fails the test if k events in n runs are significantly (one-sided, 1%) more than rate:
// the observed rate must be within simulation error of the bound.
func atMostRate(t *testing.T, what string, k, n int, rate float64) {
	t.Helper()
	// P(X >= k) under Binomial(n, rate)
	pval := distuv.Binomial{N: float64(n), P: rate}.Survival(float64(k) - 0.5)
	t.Logf("%s: %d of %d (%.2f%%), bound %.2f%%, P(X >= %d) = %.3g", what, k, n, 100*float64(k)/float64(n), 100*rate, k, pval)
	if pval < 0.01 {
		t.Errorf("%s: %d of %d runs, significantly more than %.2f%% (p = %.3g)", what, k, n, 100*rate, pval)
	}
}

// TestPairedFalseAlarmUnderContinuousMonitoring is the property the sequential design exists for:
// under the null, looking after every batch, the share of runs that ever Fail stays at or below alpha.
func TestPairedFalseAlarmUnderContinuousMonitoring(t *testing.T) {
	t.Parallel()
	const runs, batches, batchSize = 2000 / raceScale, 200, 10
	cases := []struct {
		name      string
		nu, mean  float64 // share of non-zero differences, true mean
		tolerance float64
	}{
		{"rare events like a 0.5% 5xx rate", 0.01, 0, 0},
		{"exceedance of a P99", 0.02, 0, 0},
		{"exceedance of a median", 0.5, 0, 0},
		{"null boundary with a tolerance", 0.3, 0.05, 0.05},
		{"better canary", 0.3, -0.05, 0},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const alpha = 0.05
			fails := 0
			for r := range runs {
				pt, err := NewPairedTest(PairedConfig{Alpha: alpha, Beta: 0.05, Margin: tc.tolerance + 0.1, Tolerance: tc.tolerance})
				if err != nil {
					t.Fatal(err)
				}
				src := newPairSource(uint64(ci*100000+r), tc.nu, tc.mean)
				for range batches {
					pt.Add(src.batch(batchSize))
					if pt.Verdict() == Fail {
						fails++
						break
					}
				}
			}
			atMostRate(t, "false alarms", fails, runs, alpha)
		})
	}
}

// TestPairedWrongPassRate: when the true difference is exactly the margin, Pass happens at most beta
// of the time, however often the test is checked.
func TestPairedWrongPassRate(t *testing.T) {
	t.Parallel()
	const runs, beta = 2000 / raceScale, 0.05
	passes := 0
	for r := range runs {
		pt, _ := NewPairedTest(PairedConfig{Alpha: 0.01, Beta: beta, Margin: 0.05})
		src := newPairSource(uint64(r), 0.3, 0.05)
		for range 300 {
			pt.Add(src.batch(10))
			if pt.Verdict() != NeedMoreData {
				break
			}
		}
		if pt.Verdict() == Pass {
			passes++
		}
	}
	atMostRate(t, "wrong passes", passes, runs, beta)
}

func TestPairedPower(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		nu, mean float64
		margin   float64
		maxPairs int
		want     Verdict
		minRate  float64
	}{
		// +1 pp 5xx on 0.5%: non-zero differences ~2%, mean 0.01
		{"+1pp errors fail", 0.02, 0.01, 0.01, 8000, Fail, 0.95},
		// a 10% error canary against a clean baseline: each canary error multiplies the best bet's
		// wealth by at most 1.95, so about 12 errors are needed (the ratio guard is the fast path)
		{"10% errors fail", 0.10, 0.10, 0.01, 200, Fail, 0.9},
		{"median shift fails", 0.5, 0.2, 0.1, 1000, Fail, 0.99},
		{"identical passes", 0.5, 0, 0.1, 2000, Pass, 0.95},
		{"rare identical passes", 0.01, 0, 0.01, 5000, Pass, 0.95},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const runs = 300 / raceScale
			hits := 0
			for r := range runs {
				pt, _ := NewPairedTest(PairedConfig{Alpha: 0.0025, Beta: 0.05, Margin: tc.margin})
				src := newPairSource(uint64(ci*1000+r)+99, tc.nu, tc.mean)
				for n := 0; n < tc.maxPairs && pt.Verdict() == NeedMoreData; n += 5 {
					pt.Add(src.batch(5))
				}
				if pt.Verdict() == tc.want {
					hits++
				}
			}
			if rate := float64(hits) / runs; rate < tc.minRate {
				t.Errorf("%v in %d of %d runs (%.1f%%) within %d pairs, want at least %.0f%%", tc.want, hits, runs, 100*rate, tc.maxPairs, 100*tc.minRate)
			}
		})
	}
}

// TestPairedIntervalMatchesVerdict: Fail is reached exactly when the lower bound passes the tolerance
// (and Pass when the upper bound drops below the margin) at the look where it happens.
func TestPairedIntervalMatchesVerdict(t *testing.T) {
	t.Parallel()
	for r := range 60 {
		mean := []float64{-0.05, 0, 0.05, 0.15}[r%4]
		pt, _ := NewPairedTest(PairedConfig{Alpha: 0.01, Beta: 0.05, Margin: 0.1, Tolerance: 0.02})
		src := newPairSource(uint64(r), 0.4, mean)
		for range 150 {
			before := pt.Verdict()
			pt.Add(src.batch(10))
			lo, hi := pt.Interval()
			if lo > hi+1e-12 && pt.Counts().N() > 50 {
				t.Fatalf("run %d: lower %v above upper %v", r, lo, hi)
			}
			if before == NeedMoreData {
				if (pt.Verdict() == Fail) != (LowerBound(pt.Counts(), 0.01) > 0.02-1e-9 && pt.failAt > 0) {
					t.Fatalf("run %d: verdict %v but lower bound %v vs tolerance 0.02", r, pt.Verdict(), lo)
				}
				if pt.Verdict() == Pass && !(hi <= 0.1+1e-9) {
					t.Fatalf("run %d: pass but upper bound %v above margin 0.1", r, hi)
				}
			}
			if pt.Verdict() != NeedMoreData {
				break
			}
		}
	}
}

// TestMorePairsPredicts: the estimate of pairs needed is close to what the test then takes.
func TestMorePairsPredicts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		nu, mean float64
		margin   float64
	}{
		{"pass with a 50% non-zero share", 0.5, 0, 0.1},
		{"pass with rare events", 0.02, 0, 0.01},
		{"fail at the margin", 0.5, 0.1, 0.1},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var predicted, actual []float64
			for r := range 200 {
				pt, _ := NewPairedTest(PairedConfig{Alpha: 0.0025, Beta: 0.05, Margin: tc.margin})
				src := newPairSource(uint64(ci*1000+r), tc.nu, tc.mean)
				pt.Add(src.batch(200)) // enough to estimate the non-zero share
				if pt.Verdict() != NeedMoreData {
					continue
				}
				predicted = append(predicted, float64(pt.MorePairs()))
				start := pt.Counts().N()
				for pt.Verdict() == NeedMoreData && pt.Counts().N() < 200000 {
					pt.Add(src.batch(10))
				}
				actual = append(actual, float64(pt.Counts().N()-start))
			}
			p, a := median(predicted), median(actual)
			t.Logf("median predicted %v, median actual %v", p, a)
			if !(p > a/2 && p < a*2) {
				t.Errorf("median predicted %v more pairs, actual %v: off by more than a factor of 2", p, a)
			}
		})
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := range s { // insertion sort, small slices
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s) == 0 {
		return math.NaN()
	}
	return s[len(s)/2]
}

func TestVerdictText(t *testing.T) {
	t.Parallel()
	for _, v := range []Verdict{NeedMoreData, Pass, Fail} {
		b, _ := v.MarshalText()
		var back Verdict
		if err := back.UnmarshalText(b); err != nil || back != v {
			t.Errorf("round trip of %v: %v, %v", v, back, err)
		}
	}
	var v Verdict
	if err := v.UnmarshalText([]byte("maybe")); err == nil {
		t.Error("unknown verdict accepted")
	}
}

func FuzzPairedTest(f *testing.F) {
	f.Add(uint16(3), uint16(0), uint16(0), uint16(5), 0.01, 0.0)
	f.Add(uint16(0), uint16(0), uint16(0), uint16(1), 0.5, 0.2)
	f.Add(uint16(1000), uint16(1), uint16(999), uint16(20), 0.99, 0.98)
	f.Fuzz(func(t *testing.T, p, z, m, looks uint16, margin, tolerance float64) {
		pt, err := NewPairedTest(PairedConfig{Alpha: 0.01, Beta: 0.05, Margin: margin, Tolerance: tolerance})
		if err != nil {
			return // invalid configs are rejected, which is what we want
		}
		for range looks % 50 {
			pt.Add(int64(p), int64(z), int64(m))
			for _, e := range []float64{pt.FailEValue(), pt.PassEValue()} {
				if !(e >= 0) { // also NaN
					t.Fatalf("e-value %v", e)
				}
				if pv := min(1, 1/e); !(pv >= 0 && pv <= 1) {
					t.Fatalf("p-value %v", pv)
				}
			}
			lo, hi := pt.Interval()
			if !(lo >= -1 && lo <= 1 && hi >= -1 && hi <= 1) {
				t.Fatalf("interval [%v, %v] outside [-1, 1]", lo, hi)
			}
			if mp := pt.MorePairs(); mp < -1 {
				t.Fatalf("MorePairs %d", mp)
			}
		}
	})
}

// TestNaiveRepeatedTestingInflates is the negative control of the false-alarm property: the same
// harness catches a fixed-horizon one-sided z-test at 5% that is checked after every batch.
func TestNaiveRepeatedTestingInflates(t *testing.T) {
	t.Parallel()
	const runs = 500
	fails := 0
	for r := range runs {
		src := newPairSource(uint64(r), 0.5, 0)
		var c Counts
		for range 200 {
			p, z, m := src.batch(10)
			c.Plus, c.Zero, c.Minus = c.Plus+p, c.Zero+z, c.Minus+m
			n := float64(c.N())
			sd := math.Sqrt(float64(c.Plus+c.Minus)/n - c.Mean()*c.Mean())
			if sd > 0 && c.Mean()/sd*math.Sqrt(n) > 1.6448536269514722 {
				fails++
				break
			}
		}
	}
	pval := distuv.Binomial{N: runs, P: 0.05}.Survival(float64(fails) - 0.5)
	t.Logf("naive z-test checked 200 times: %d of %d false alarms (%.1f%%)", fails, runs, 100*float64(fails)/runs)
	if pval >= 0.01 {
		t.Errorf("the harness did not detect the naive test's inflated false alarms (%d of %d)", fails, runs)
	}
}

// TestMorePairsToPassIsSteady: the "about N more requests" shown while a step is undecided must not
// jump with the noise of a few pairs. MorePairs switches from the pairs to pass to the pairs to fail
// whenever the observed difference crosses half the margin — with rare 5xx, one error among a few
// hundred pairs does that — and tripled from one look to the next (the demo showed 1912, then 21190);
// MorePairsToPass answers one question throughout. Seeded, deterministic.
func TestMorePairsToPassIsSteady(t *testing.T) {
	t.Parallel()
	pt, _ := NewPairedTest(PairedConfig{Alpha: 0.0025, Beta: 0.05, Margin: 0.0075})
	src := newPairSource(3, 0.02, 0) // rare events, no difference: a good canary
	jump := func(prev, cur int64) float64 {
		if prev <= 0 || cur <= 0 {
			return 1
		}
		return max(float64(cur)/float64(prev), float64(prev)/float64(cur))
	}
	var prevBoth, prevPass int64
	worstBoth, worstPass := 1.0, 1.0
	for range 40 {
		pt.Add(src.batch(5))
		both, pass := pt.MorePairs(), pt.MorePairsToPass()
		worstBoth, worstPass = max(worstBoth, jump(prevBoth, both)), max(worstPass, jump(prevPass, pass))
		prevBoth, prevPass = both, pass
	}
	t.Logf("largest change between two looks 5 pairs apart: MorePairs x%.2f, MorePairsToPass x%.2f", worstBoth, worstPass)
	if worstBoth < 2.5 {
		t.Errorf("MorePairs changed at most x%.2f: the trace no longer shows the switch this test guards against", worstBoth)
	}
	if worstPass > 2 {
		t.Errorf("MorePairsToPass changed x%.2f between two looks 5 pairs apart", worstPass)
	}
}
