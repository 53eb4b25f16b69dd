package sim

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/sim/traffic"
)

// binomCDF is P(X <= k) for X ~ Binomial(n, p), summed in log space.
func binomCDF(k, n int, p float64) float64 {
	s := 0.0
	for i := 0; i <= k; i++ {
		lg := func(x int) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
		s += math.Exp(lg(n) - lg(i) - lg(n-i) + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return s
}

// TestClopperPearson checks the interval against its definition: at the upper end, seeing k or
// fewer has probability 2.5%; at the lower end, seeing k or more has probability 2.5%.
func TestClopperPearson(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ k, n int }{{0, 1000}, {1, 1000}, {10, 1000}, {20, 1000}, {3, 7}, {999, 1000}, {1000, 1000}} {
		lo, hi := clopperPearson(tc.k, tc.n)
		if tc.k < tc.n {
			if got := binomCDF(tc.k, tc.n, hi); math.Abs(got-0.025) > 1e-7 {
				t.Errorf("k=%d n=%d: upper %v gives P(X<=k) = %v, want 0.025", tc.k, tc.n, hi, got)
			}
		} else if hi != 1 {
			t.Errorf("k=n=%d: upper %v, want 1", tc.n, hi)
		}
		if tc.k > 0 {
			if got := 1 - binomCDF(tc.k-1, tc.n, lo); math.Abs(got-0.025) > 1e-7 {
				t.Errorf("k=%d n=%d: lower %v gives P(X>=k) = %v, want 0.025", tc.k, tc.n, lo, got)
			}
		} else if lo != 0 {
			t.Errorf("k=0: lower %v, want 0", lo)
		}
	}
	// closed form at k = 0: 1 - 0.025^(1/n)
	if _, hi := clopperPearson(0, 1000); math.Abs(hi-(1-math.Pow(0.025, 1.0/1000))) > 1e-12 {
		t.Errorf("k=0 n=1000: upper %v", hi)
	}
	// Wilson at k = 0: [0, z²/(n+z²)]
	const z2 = 1.959963984540054 * 1.959963984540054
	if lo, hi := wilson(0, 1000); lo != 0 || math.Abs(hi-z2/(1000+z2)) > 1e-12 {
		t.Errorf("wilson(0, 1000) = [%v, %v]", lo, hi)
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	spec, err := (&Scenario{Expect: ExpectPromote, Model: traffic.Model{Rate: traffic.Rate{RPS: 1}}}).Spec()
	if err != nil {
		t.Fatal(err)
	}
	rb := func(onset float64, why ...string) Rollout {
		return Rollout{Outcome: RolledBack, Seconds: onset + 100, SinceOnset: onset, Why: why}
	}
	t.Run("bad canary", func(t *testing.T) {
		t.Parallel()
		sc := &Scenario{Name: "x", Expect: ExpectRollback, Target: Target{MinDetection: 0.5, Within: 10 * time.Minute, MedianRollback: 30 * time.Second}}
		rs := []Rollout{rb(5, "5xx-guard"), rb(20, "5xx-guard"), rb(900, "5xx-rate"), {Outcome: Paused, Seconds: 900, Why: []string{rollout.PauseNeedMoreData}},
			{Outcome: Promoted, Seconds: 700}}
		r := summarize(sc, spec, rs)
		if r.RolledBack != 3 || r.Paused != 1 || r.Promoted != 1 {
			t.Fatalf("counts %+v", r)
		}
		// the rollback after 900 s is outside within: 2 of 5 detected
		// and half of all five were rolled back only by 900 s, not in a median under 30 s
		if r.Rate != 0.4 || r.Met || len(r.Missed) != 2 || !strings.Contains(r.Missed[0], "detection within 10m") ||
			!strings.Contains(r.Missed[1], "median time to roll back 900 s") {
			t.Errorf("rate %v met %v missed %q; want 0.4, detection and median missed", r.Rate, r.Met, r.Missed)
		}
		if r.HalfRolledBackS != 900 || r.MedianRollbackS != 20 {
			t.Errorf("half rolled back by %v s (want 900), median rollback %v s (want 20)", r.HalfRolledBackS, r.MedianRollbackS)
		}
		if len(r.RollbacksBy) != 2 || r.RollbacksBy[0] != (Count{"5xx-guard", 2}) || len(r.PausesBy) != 1 {
			t.Errorf("why %+v pauses %+v", r.RollbacksBy, r.PausesBy)
		}
	})
	t.Run("median rollback needs half of all rollouts", func(t *testing.T) {
		t.Parallel()
		sc := &Scenario{Name: "x", Expect: ExpectRollback, Target: Target{MinDetection: 0.1, MedianRollback: time.Minute}}
		r := summarize(sc, spec, []Rollout{rb(1), {Outcome: Promoted}, {Outcome: Promoted}})
		if r.Met || !strings.Contains(strings.Join(r.Missed, ";"), "fewer than half") {
			t.Errorf("one of three rolled back: met %v missed %q", r.Met, r.Missed)
		}
	})
	t.Run("good canary", func(t *testing.T) {
		t.Parallel()
		sc := &Scenario{Name: "x", Expect: ExpectPromote, Target: Target{}.withDefaults(ExpectPromote)}
		rs := make([]Rollout, 1000)
		for i := range rs {
			rs[i] = Rollout{Outcome: Promoted, Seconds: float64(i)}
		}
		rs[0] = rb(3, "latency-median")
		r := summarize(sc, spec, rs)
		// 1 of 1000: rate 0.1%, exact upper bound 0.56% — both within 1% and 2%
		if r.Rate != 0.001 || !r.Met || r.RateUpperCP > 0.006 || r.RateUpperCP < 0.005 {
			t.Errorf("rate %v upper %v met %v %q", r.Rate, r.RateUpperCP, r.Met, r.Missed)
		}
		for i := 1; i <= 15; i++ {
			rs[i] = rb(3, "latency-median")
		}
		if r := summarize(sc, spec, rs); r.Met || len(r.Missed) != 2 {
			t.Errorf("16 of 1000 (1.6%%): met %v missed %q; want both targets missed", r.Met, r.Missed)
		}
	})
}
