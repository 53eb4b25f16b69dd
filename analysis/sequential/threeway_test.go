package sequential

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestThreeWayReferenceEValues: the mixture e-value against values computed independently with
// python3 from the multinomial cell probabilities (pi proportional to (n_c·R, n_b·B, n_s) under the
// alternative, (n_c·F, n_b·F, n_s) under the null; likelihood ratio prod (pi1_i/pi0_i)^x_i, averaged
// over R = 12 and 24 with F = 3, B = max(1, (F(n_c+n_b) - R·n_c)/n_b)).
func TestThreeWayReferenceEValues(t *testing.T) {
	t.Parallel()
	type slot struct{ xc, nc, xb, nb, xs, ns int64 }
	for _, tc := range []struct {
		name  string
		slots []slot
		want  float64
	}{
		{"canary 5/50, baseline 0/50, stable 10/1950", []slot{{5, 50, 0, 50, 10, 1950}}, 141.69267298138737},
		{"canary and baseline alike at 5/50", []slot{{5, 50, 5, 50, 10, 1950}}, 0.17572056832388394},
		{"baseline 10 times the canary's requests: B raised", []slot{{1, 2, 0, 20, 3, 100}}, 5.812898255485111},
		{"no stable (the 50/50 step)", []slot{{3, 30, 1, 30, 0, 0}}, 0.7671321860831202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tw, err := newThreeWay(0.004, 3, fastAlts)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.slots {
				tw.add(s.xc, s.nc, s.xb, s.nb, s.xs, s.ns)
			}
			if got := math.Exp(tw.logE()); math.Abs(got/tc.want-1) > 1e-9 {
				t.Errorf("e-value %.12g, want %.12g", got, tc.want)
			}
		})
	}
}

// TestThreeWayIsASupermartingaleUnderTheNull checks the validity argument of threeway.go exactly, not
// by sampling: for random slot compositions and random points of H0 (rho_c <= min(rho_b, F)), the
// conditional expectation of each alternative's per-error likelihood ratio, sum_i pi_i w_i, is at
// most 1, so the slot's factor (its k-th power) has expectation at most 1 for every error count k.
func TestThreeWayIsASupermartingaleUnderTheNull(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 12))
	for _, fa := range []struct {
		fresh float64
		alts  [2]int
	}{{1, fastAlts}, {1.5, fastAlts}, {3, fastAlts}, {6, fastAlts}, {3, [2]int{16, 24}}, {1.5, [2]int{16, 24}}, {3, [2]int{40, 40}}} {
		fresh := fa.fresh
		tw, err := newThreeWay(0.01, fresh, fa.alts)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for range 20000 {
			nc, nb, ns := float64(1+rng.IntN(200)), float64(rng.IntN(400)), float64(rng.IntN(5000))
			if rng.IntN(4) == 0 {
				ns = 0 // the 50/50 step
			}
			rc := fresh * rng.Float64()
			rb := rc + rng.ExpFloat64()*fresh*float64(rng.IntN(2)) // the baseline at or above the canary
			if nb+ns == 0 {
				continue
			}
			z0 := fresh*(nc+nb) + ns
			for _, r := range tw.alt {
				b := 1.0
				if nb > 0 {
					b = max(1, (fresh*(nc+nb)-r*nc)/nb)
				}
				z1 := r*nc + b*nb + ns
				w := [3]float64{r / fresh * z0 / z1, b / fresh * z0 / z1, z0 / z1}
				p := [3]float64{nc * rc, nb * rb, ns}
				sum := p[0] + p[1] + p[2]
				if sum == 0 {
					continue
				}
				e := (p[0]*w[0] + p[1]*w[1] + p[2]*w[2]) / sum
				worst = max(worst, e)
			}
		}
		if worst > 1+1e-12 {
			t.Errorf("fresh factor %g, alternatives %v: a null point's expected likelihood ratio per error is %.15g > 1", fresh, fa.alts, worst)
		}
	}
}

// TestThreeWayFalseAlarms: looked at after every one-second slot for 10 minutes, canary and baseline
// both fresh at F times stable's 5xx rate (the null's corner, where it is hardest) reach 1/alpha at
// most alpha of the time, as does a canary at F beside a baseline failing more; a 10%-5xx canary
// does within the minute. (A cold start beyond F, both at 2F, is outside H0: with alpha 0.05 about
// 10% of such runs reach 1/alpha, which is why fastTest also needs the baseline comparison.)
func TestThreeWayFalseAlarms(t *testing.T) {
	t.Parallel()
	const alpha, fresh, stable = 0.05, 3.0, 0.005
	run := func(rng *rand.Rand, canary, baseline float64, slots int) (int, bool) {
		tw, _ := newThreeWay(alpha, fresh, fastAlts)
		for i := range slots {
			nc, nb, ns := int64(poisson(rng, 5)), int64(poisson(rng, 5)), int64(poisson(rng, 190))
			tw.add(binomial(rng, nc, canary), nc, binomial(rng, nb, baseline), nb, binomial(rng, ns, stable), ns)
			if tw.exceeds() {
				return i + 1, true
			}
		}
		return slots, false
	}
	for _, tc := range []struct {
		name             string
		canary, baseline float64
		rate             float64 // the largest share of runs allowed to reach 1/alpha
	}{
		{"both fresh at F", fresh * stable, fresh * stable, alpha},
		{"canary at F, the baseline at 2F", fresh * stable, 2 * fresh * stable, alpha},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(21, uint64(len(tc.name))))
			runs, fails := 400/raceScale, 0
			for range runs {
				if _, failed := run(rng, tc.canary, tc.baseline, 600); failed {
					fails++
				}
			}
			atMostRate(t, tc.name, fails, runs, tc.rate)
		})
	}
	t.Run("10% canary detected", func(t *testing.T) {
		t.Parallel()
		rng := rand.New(rand.NewPCG(22, 23))
		for i := range 20 {
			if n, failed := run(rng, 0.10, stable, 60); !failed {
				t.Errorf("run %d: a 10%%-5xx canary not detected within %d one-second slots", i, n)
			}
		}
	})
}

// TestThreeWayFalseAlarmsAtARoutesRates: the far alternatives a route's fast test uses (16 and 64
// times the tolerated ratio, rollout/routes_fast.go) at a 2% route's rates: 15-s slots with 1.5
// canary, 1.5 baseline and 57 stable requests on average, 20 minutes, canary and baseline at the
// null's corner (both F times stable's 5xx rate): at most alpha of the runs reach 1/alpha.
func TestThreeWayFalseAlarmsAtARoutesRates(t *testing.T) {
	t.Parallel()
	const alpha, fresh, stable = 0.05, 3.0, 0.005
	rng := rand.New(rand.NewPCG(31, 32))
	runs, fails := 2000/raceScale, 0
	for range runs {
		tw, _ := newThreeWay(alpha, fresh, [2]int{16, 24})
		for range 80 {
			nc, nb, ns := int64(poisson(rng, 1.5)), int64(poisson(rng, 1.5)), int64(poisson(rng, 57))
			tw.add(binomial(rng, nc, fresh*stable), nc, binomial(rng, nb, fresh*stable), nb, binomial(rng, ns, stable), ns)
			if tw.exceeds() {
				fails++
				break
			}
		}
	}
	atMostRate(t, "route rates, far alternatives, both fresh at F", fails, runs, alpha)
}
