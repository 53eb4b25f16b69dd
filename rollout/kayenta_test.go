package rollout

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
)

// The spec's default metrics through the real Kayenta judge: equal series pass, a canary with 5xx
// fails critically (score 0), a slower canary is High on latency.
func TestKayentaJudgeWithDefaultMetrics(t *testing.T) {
	t.Parallel()
	spec := testSpec()
	kj, err := NewKayentaJudge(KayentaJudgeConfig{Analysis: spec.Analysis, Noise: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	series := func(n int, base, jitter float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = base + jitter*r.Float64()
		}
		return v
	}
	zeros := make([]float64, 20)
	for _, tc := range []struct {
		name      string
		latency   providers.Pair
		errors    providers.Pair
		wantScore float64
		wantClass [2]string
		reason    string
	}{
		{"equal", providers.Pair{Baseline: series(20, 10, 2), Canary: series(20, 10, 2)}, providers.Pair{Baseline: zeros, Canary: zeros},
			100, [2]string{"Pass", "Pass"}, ""},
		{"errors", providers.Pair{Baseline: series(20, 10, 2), Canary: series(20, 10, 2)}, providers.Pair{Baseline: zeros, Canary: series(20, 8, 4)},
			0, [2]string{"Pass", "High"}, "canary mean"},
		{"slow", providers.Pair{Baseline: series(20, 10, 2), Canary: series(20, 60, 2)}, providers.Pair{Baseline: zeros, Canary: zeros},
			50, [2]string{"High", "Pass"}, "ratio 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := kj.Judge(t.Context(), []MetricPair{
				{Metric: spec.Analysis.Metrics[0], Pair: tc.latency},
				{Metric: spec.Analysis.Metrics[1], Pair: tc.errors},
			})
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(j.Score-tc.wantScore) > 1e-9 || j.Metrics[0].Classification != tc.wantClass[0] || j.Metrics[1].Classification != tc.wantClass[1] {
				t.Fatalf("score %v classes %s %s (%+v)", j.Score, j.Metrics[0].Classification, j.Metrics[1].Classification, j.Metrics)
			}
			if tc.reason != "" && !strings.Contains(j.Metrics[0].Reason+j.Metrics[1].Reason, tc.reason) {
				t.Errorf("reasons %q %q lack %q", j.Metrics[0].Reason, j.Metrics[1].Reason, tc.reason)
			}
		})
	}
}

// TestEmptyPointsAreNotZeroErrors: a point without requests has no error rate. Here the canary served
// requests in 6 of 30 points, 113 requests with 10 5xx (8.85%), and the baseline served every point
// without a 5xx. The default metrics remove the empty points: 6 points of ~9% against 30 of 0% are a
// critical High, score 0. Replaced by 0% (the old default, nanStrategy replace) the same window was a
// Pass with score 100: 24 invented clean points outvote the six real ones.
func TestEmptyPointsAreNotZeroErrors(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	canary := make([]float64, 30)
	baseline := make([]float64, 30)
	for i := range canary {
		canary[i] = nan
	}
	// 113 requests, 10 of them 5xx, in six points
	for i, v := range map[int][2]float64{3: {19, 2}, 8: {18, 2}, 13: {19, 1}, 18: {19, 2}, 23: {19, 2}, 28: {19, 1}} {
		canary[i] = 100 * v[1] / v[0]
	}
	latency := make([]float64, 30)
	for i := range latency {
		latency[i] = 80 + float64(i%7)
	}
	for _, tc := range []struct {
		name      string
		strategy  string
		wantScore float64
	}{
		{"default: removed", "", 0},
		{"replace with 0 (the old default)", "replace", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := testSpec()
			spec.Analysis.Metrics = DefaultMetrics()
			if tc.strategy != "" {
				spec.Analysis.Metrics[1].NaNStrategy = tc.strategy
			}
			kj, err := NewKayentaJudge(KayentaJudgeConfig{Analysis: spec.Analysis, Noise: rand.New(rand.NewPCG(1, 2))})
			if err != nil {
				t.Fatal(err)
			}
			j, err := kj.Judge(t.Context(), []MetricPair{
				{Metric: spec.Analysis.Metrics[0], Pair: providers.Pair{Baseline: latency, Canary: latency}},
				{Metric: spec.Analysis.Metrics[1], Pair: providers.Pair{Baseline: baseline, Canary: canary}}})
			if err != nil {
				t.Fatal(err)
			}
			if j.Score != tc.wantScore {
				t.Errorf("score %v, want %v: %+v", j.Score, tc.wantScore, j.Metrics)
			}
		})
	}
	if s := DefaultMetrics()[1]; s.Kind != providers.ErrorRate || s.NaNStrategy != "remove" {
		t.Errorf("default 5xx metric %+v: want nanStrategy remove", s)
	}
}
