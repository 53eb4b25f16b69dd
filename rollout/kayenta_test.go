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
