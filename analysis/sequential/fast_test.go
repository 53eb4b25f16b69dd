package sequential

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestFastTestReferenceEValues: one slot's e-values against values computed independently with
// python3 from the conditional binomial (theta_r = r·nc/(r·nc+n0), likelihood ratio
// (theta_r/theta_0)^x ((1-theta_r)/(1-theta_0))^(k-x), averaged over the two alternatives):
//
//	whole canary, tolerated ratio 3, alternatives 12 and 24; canary 5 of 50 failed, control 10 of
//	2000: 71.6451044638597
//	canary vs baseline, ratio 1, alternatives 8 and 16; canary 5 of 50, baseline 0 of 50:
//	20.69499409627351
func TestFastTestReferenceEValues(t *testing.T) {
	t.Parallel()
	f, err := newFastTest(0.004, 3, 3, 10, fastAlts, baseAlts)
	if err != nil {
		t.Fatal(err)
	}
	f.whole.Add(5, 50, 10, 2000)
	f.base.Add(5, 50, 0, 50)
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"whole canary vs baseline plus stable", f.whole.EValue(), 71.6451044638597},
		{"canary vs baseline", f.base.EValue(), 20.69499409627351},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if math.Abs(tc.got/tc.want-1) > 1e-9 {
				t.Errorf("e-value %.12g, want %.12g", tc.got, tc.want)
			}
		})
	}
}

// TestFastTestConditions: a Fail needs the whole canary's e-value at 1/alpha, the baseline
// comparison at its level and every named instance's consistency evidence, at the same look.
func TestFastTestConditions(t *testing.T) {
	t.Parallel()
	type slot struct {
		ce, cn     int64
		per        map[string]*tally
		be, bn     int64
		ctrlE, ctl int64
	}
	bad := func(e0, e1 int64) slot { // 50 canary requests over two instances, a clean control
		return slot{ce: e0 + e1, cn: 50, per: map[string]*tally{"c-0": {e0, 25}, "c-1": {e1, 25}}, bn: 50, ctl: 2000, ctrlE: 10}
	}
	cases := []struct {
		name  string
		slots []slot
		base  float64 // baseline evidence required (0: no baseline comparison)
		want  bool
	}{
		{"every instance worse, baseline clean: fail", []slot{bad(4, 4), bad(4, 4)}, 10, true},
		{"one instance bursting, the other clean: no fail", []slot{bad(8, 0), bad(8, 0), bad(8, 0)}, 10, false},
		{"baseline as bad as the canary (fresh alike): no fail",
			[]slot{{ce: 8, cn: 50, be: 8, bn: 50, ctl: 2000, ctrlE: 18}, {ce: 8, cn: 50, be: 8, bn: 50, ctl: 2000, ctrlE: 18}}, 10, false},
		{"warm control (no baseline comparison): fail", []slot{{ce: 8, cn: 50, ctl: 2000, ctrlE: 10}, {ce: 8, cn: 50, ctl: 2000, ctrlE: 10}}, 0, true},
		{"canary within the tolerated ratio: no fail", []slot{{ce: 1, cn: 50, bn: 50, ctl: 2000, ctrlE: 10}}, 10, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := newFastTest(0.004, 3, 3, tc.base, fastAlts, baseAlts)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.slots {
				f.add(s.ce, s.cn, s.per, s.be, s.bn, s.ctrlE, s.ctl)
				f.endBlock()
			}
			if f.failed != tc.want {
				t.Errorf("failed %v, want %v (whole e-value %.3g)", f.failed, tc.want, f.whole.EValue())
			}
		})
	}
}

// TestFastTestFalseAlarmAtTheBoundary: a canary failing exactly freshFactor times as often as the
// control (the null's boundary, where it is hardest) is rolled back by the fast test with
// probability at most its alpha, looked at after every slot.
func TestFastTestFalseAlarmAtTheBoundary(t *testing.T) {
	t.Parallel()
	const runs, alpha, ratio = 400 / raceScale, 0.05, 3.0
	rng := rand.New(rand.NewPCG(7, 8))
	fails := 0
	for range runs {
		f, _ := newFastTest(alpha, ratio, 3, 0, fastAlts, baseAlts)
		for range 600 { // 600 one-second slots: 5 canary and 190 control requests/s, 0.5% control 5xx
			cn, n0 := int64(poisson(rng, 5)), int64(poisson(rng, 190))
			ce, c0 := binomial(rng, cn, ratio*0.005), binomial(rng, n0, 0.005)
			f.add(ce, cn, nil, 0, 0, c0, n0)
			if f.failed {
				fails++
				break
			}
		}
	}
	atMostRate(t, "fast test false alarms at the null's boundary", fails, runs, alpha)
}

func binomial(rng *rand.Rand, n int64, p float64) int64 {
	var k int64
	for range n {
		if rng.Float64() < p {
			k++
		}
	}
	return k
}

// TestPassBlockCap: the pass side grows by at most PassBlockCap per block, the fail side by
// BlockCap; a PassBlockCap needs a BlockCap.
func TestPassBlockCap(t *testing.T) {
	t.Parallel()
	tt, err := NewPairedTest(PairedConfig{Alpha: 0.01, Beta: 0.05, Margin: 0.1, BlockCap: 1, PassBlockCap: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		tt.Add(0, 0, 200) // the baseline is worse in every pair: overwhelming pass evidence
		tt.EndBlock()
	}
	if got := math.Log(tt.PassEValue()); got > 4*0.25+1e-9 {
		t.Errorf("pass log e-value %.3f after 4 blocks, want at most %.2f", got, 4*0.25)
	}
	if _, err := NewPairedTest(PairedConfig{Alpha: 0.01, Beta: 0.05, Margin: 0.1, PassBlockCap: 0.25}); err == nil {
		t.Error("a pass cap without a block cap was accepted")
	}
}
