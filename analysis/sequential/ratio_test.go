package sequential

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestRatioConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		cfg   RatioConfig
		field string
	}{
		{"valid", RatioConfig{Alpha: 0.01, Tolerance: 1.5}, ""},
		{"alpha", RatioConfig{Alpha: 0, Tolerance: 1.5}, "alpha"},
		{"tolerance below 1", RatioConfig{Alpha: 0.01, Tolerance: 0.9}, "tolerance"},
		{"tolerance NaN", RatioConfig{Alpha: 0.01, Tolerance: math.NaN()}, "tolerance"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewRatioTest(tc.cfg)
			var ce *ConfigError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.field != "" && (!errors.As(err, &ce) || ce.Field != tc.field):
				t.Fatalf("error %v, want field %s", err, tc.field)
			}
		})
	}
}

// binomialDraw counts the successes of n Bernoulli(p) trials exactly, jumping from one success to the
// next with geometric gaps (fast for small p).
func binomialDraw(src rand.Source, n int64, p float64) int64 {
	if n == 0 || p <= 0 {
		return 0
	}
	rng := rand.New(src)
	lq := math.Log1p(-p)
	var k int64
	for i := int64(math.Log(1-rng.Float64()) / lq); i < n; i += 1 + int64(math.Log(1-rng.Float64())/lq) {
		k++
	}
	return k
}

// TestRatioFalseAlarmUnderContinuousMonitoring: Bernoulli requests (not Poisson) with the canary's
// rate at exactly the tolerated ratio; a look after every one-second batch for 10 minutes.
func TestRatioFalseAlarmUnderContinuousMonitoring(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		tolerance float64
		p0        float64
	}{
		{"equal rates, rare errors", 1, 0.005},
		{"equal rates, frequent errors", 1, 0.05},
		{"canary at 1.5 times", 1.5, 0.005},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const runs, alpha = 1000 / raceScale, 0.05
			fails := 0
			for r := range runs {
				src := rand.NewPCG(uint64(ci), uint64(r))
				rt, _ := NewRatioTest(RatioConfig{Alpha: alpha, Tolerance: tc.tolerance})
				for range 600 {
					rt.Add(binomialDraw(src, 5, tc.p0*tc.tolerance), 5, binomialDraw(src, 195, tc.p0), 195)
					if rt.Verdict() == Fail {
						fails++
						break
					}
				}
			}
			atMostRate(t, "false alarms", fails, runs, alpha)
		})
	}
}

func TestRatioDetectsGrossRegressionFast(t *testing.T) {
	t.Parallel()
	var times []float64
	for r := range 300 {
		src := rand.NewPCG(42, uint64(r))
		rt, _ := NewRatioTest(RatioConfig{Alpha: 0.0025, Tolerance: 1.5})
		sec := 0
		for ; sec < 120 && rt.Verdict() != Fail; sec++ {
			rt.Add(binomialDraw(src, 5, 0.10), 5, binomialDraw(src, 195, 0.005), 195)
		}
		times = append(times, float64(sec))
	}
	// alone, at the analyzer's per-test alpha; in the analyzer the paired 5xx test races it
	if m := median(times); m > 10 {
		t.Errorf("median time to detect a 10%% error canary at 5 requests/s: %v s, want at most 10", m)
	}
}

func TestRatioBoundsAndRatio(t *testing.T) {
	t.Parallel()
	rt, _ := NewRatioTest(RatioConfig{Alpha: 0.01, Tolerance: 1})
	if !math.IsNaN(rt.Ratio()) {
		t.Errorf("ratio without data = %v, want NaN", rt.Ratio())
	}
	rt.Add(3, 100, 0, 1000)
	if !math.IsInf(rt.Ratio(), 1) {
		t.Errorf("ratio with no control errors = %v, want +Inf", rt.Ratio())
	}
	for range 50 {
		rt.Add(10, 100, 10, 1000) // ratio 10
	}
	lo := rt.LowerBound(0.01)
	if !(lo > 5 && lo < 10) {
		t.Errorf("lower bound %v for an observed ratio of about 10", lo)
	}
	if rt.Verdict() != Fail {
		t.Errorf("verdict %v, want fail", rt.Verdict())
	}
}

func FuzzRatioTest(f *testing.F) {
	f.Add(uint8(1), uint16(5), uint8(0), uint16(195), 1.5)
	f.Add(uint8(5), uint16(5), uint8(5), uint16(5), 1.0)
	f.Add(uint8(0), uint16(0), uint8(3), uint16(3), 1000.0)
	f.Fuzz(func(t *testing.T, x uint8, nc uint16, y uint8, n0 uint16, tol float64) {
		rt, err := NewRatioTest(RatioConfig{Alpha: 0.01, Tolerance: tol})
		if err != nil {
			return
		}
		xe, ye := min(int64(x), int64(nc)), min(int64(y), int64(n0))
		for range 5 {
			rt.Add(xe, int64(nc), ye, int64(n0))
			if e := rt.EValue(); !(e >= 0) {
				t.Fatalf("e-value %v", e)
			}
			if lb := rt.LowerBound(0.01); !(lb > 0) {
				t.Fatalf("lower bound %v", lb)
			}
		}
	})
}
