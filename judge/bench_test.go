package judge

import (
	"fmt"
	"testing"
)

// BenchmarkJudge measures a judgement of two metrics (P99 latency and 5xx rate, as in
// testdata/judge) for a few series lengths: the cost the rollout engine pays per analysis step.
func BenchmarkJudge(b *testing.B) {
	cfg, err := ParseCanaryConfig([]byte(`{"metrics": [
		{"name": "lat", "groups": ["latency"], "analysisConfigurations": {"canary": {"direction": "increase", "mustHaveData": true}}},
		{"name": "err", "groups": ["errors"], "analysisConfigurations": {"canary": {"direction": "increase", "critical": true, "nanStrategy": "replace"}}}],
		"classifier": {"groupWeights": {"latency": 50, "errors": 50}}}`))
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{60, 600, 6000} {
		pairs := []MetricSetPair{
			{Name: "lat", Control: series(n, 120, 10), Experiment: series(n, 130, 10)},
			{Name: "err", Control: series(n, 0.5, 0.2), Experiment: series(n, 0.6, 0.2)},
		}
		b.Run(fmt.Sprintf("points=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Judge(cfg, DefaultThresholds, pairs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
