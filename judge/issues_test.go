package judge

import (
	"math"
	"testing"
)

// TestIssueReferenceValues replays, through the whole judge (config parsing, preprocessing,
// classification at tolerance 0.25 / confidence 0.98, scoring), cases that users of Kayenta posted with
// Kayenta's own debug output. These are the only judge-level reference values available: the upstream
// vector kit has no judge/judgeMetric vectors.
func TestIssueReferenceValues(t *testing.T) {
	t.Parallel()
	ones := []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	tests := []struct {
		name       string
		source     string
		canary     string // analysisConfigurations.canary
		control    []float64
		experiment []float64
		class      Classification
		ciLower    float64 // NaN: not reported
		ciUpper    float64
		estimate   float64
		bound      float64
		ratio      float64 // NaN: NaN expected
	}{
		{
			// Kayenta's MannWhitneyClassifier(tolerance 0.25, confLevel 0.98, effectSizeThresholds (1.0, 1.05),
			// criticalThresholds (1.0, 1.1)) on 7 of 10 canary values at 100 against ten 1s: the reporter's
			// debugger showed confidenceInterval0 = 6.825022991538781E-5, confidenceInterval1 = 99.0,
			// estimate = 98.99992904170193, upperBound = 24.749982260425483, deviation 70.3 → Pass.
			name:    "spinnaker-6278-seven-of-ten",
			source:  "https://github.com/spinnaker/spinnaker/issues/6278 (arungeorge101, 2021-07-12)",
			canary:  `{"effectSize": {"allowedDecrease": 1.0, "allowedIncrease": 1.05, "criticalDecrease": 1.0, "criticalIncrease": 1.1}}`,
			control: ones, experiment: []float64{100, 100, 100, 100, 100, 100, 100, 1, 1, 1},
			class: Pass, ciLower: 6.825022991538781e-5, ciUpper: 99.0, estimate: 98.99992904170193, bound: 24.749982260425483, ratio: 70.3,
		},
		{
			// Same issue: "It fails as soon as I change the 8th value" (to 100).
			name:    "spinnaker-6278-eight-of-ten",
			source:  "https://github.com/spinnaker/spinnaker/issues/6278",
			canary:  `{"effectSize": {"allowedDecrease": 1.0, "allowedIncrease": 1.05, "criticalDecrease": 1.0, "criticalIncrease": 1.1}}`,
			control: ones, experiment: []float64{100, 100, 100, 100, 100, 100, 100, 100, 1, 1},
			class: High, ciLower: math.NaN(), ratio: 80.2,
		},
		{
			// direction increase, nanStrategy replace; baseline all NaN (→ 0), canary a few small
			// error rates: Kayenta reported deviation "N/A" (mean ratio NaN: baseline mean 0) and Pass.
			name:    "spinnaker-5622-replace-zero-baseline",
			source:  "https://github.com/spinnaker/spinnaker/issues/5622 (slaribi, 2020-03-27)",
			canary:  `{"direction": "increase", "nanStrategy": "replace"}`,
			control: nanSeries(10), experiment: []float64{math.NaN(), 0.048, math.NaN(), 0.18, 0.089, math.NaN(), 0.098, 0.035, math.NaN(), math.NaN()},
			class: Pass, ciLower: math.NaN(), ratio: math.NaN(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := mustConfig(t, `{"metrics": [{"name": "m", "groups": ["g"], "analysisConfigurations": {"canary": `+tc.canary+`}}]}`)
			res, err := Judge(cfg, DefaultThresholds, []MetricSetPair{{Name: "m", Control: tc.control, Experiment: tc.experiment}}, seeded())
			if err != nil {
				t.Fatal(err)
			}
			r := res.Results[0]
			w := r.Why
			if r.Classification != tc.class {
				t.Fatalf("%s: classification %s, want %s (why %+v)", tc.source, r.Classification, tc.class, w)
			}
			if got := r.Ratio(); !(math.IsNaN(tc.ratio) && math.IsNaN(got)) && math.Abs(got-tc.ratio) > 1e-9*math.Abs(tc.ratio) {
				t.Errorf("ratio %v, want %v", got, tc.ratio)
			}
			if math.IsNaN(tc.ciLower) {
				return
			}
			for _, c := range []struct {
				what      string
				got, want float64
			}{{"ciLower", w.CILower, tc.ciLower}, {"ciUpper", w.CIUpper, tc.ciUpper}, {"estimate", w.Estimate, tc.estimate}, {"bound", w.Bound, tc.bound}} {
				if math.Abs(c.got-c.want) > 1e-9*math.Abs(c.want) {
					t.Errorf("%s %v, want %v (%s)", c.what, c.got, c.want, tc.source)
				}
			}
		})
	}
}
