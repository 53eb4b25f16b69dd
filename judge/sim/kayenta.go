package sim

import (
	"fmt"
	"math/rand/v2"

	"github.com/canaryctl/canaryctl/judge"
	"github.com/canaryctl/canaryctl/providers"
)

// Kayenta metric names, as the rollout engine's default metrics.
const (
	metricP99  = "p99-latency"
	metricRate = "5xx-rate"
)

// NewKayentaJudge returns the Kayenta-compatible judge of the rollout engine's default analysis: P99
// latency (direction increase, must have data, NaN removed, group "latency", allowed increase 1.1 as
// a mean ratio) and 5xx rate (direction increase, critical, NaN replaced by 0, group "errors"), equal
// group weights, judged by package judge (Kayenta's NetflixACAJudge) with the schedule's thresholds.
func NewKayentaJudge(sch Schedule) (KayentaJudge, error) {
	lat := judge.DefaultAnalysis()
	lat.Direction, lat.NaNStrategy, lat.MustHaveData = judge.Increase, judge.NaNRemove, true
	lat.AllowedIncrease, lat.AllowedDecrease = 1.1, 1
	rate := judge.DefaultAnalysis()
	rate.Direction, rate.NaNStrategy, rate.Critical = judge.Increase, judge.NaNReplace, true
	rate.AllowedIncrease, rate.AllowedDecrease = 1, 1
	cc := &judge.CanaryConfig{Name: "canaryctl-simulate", Judge: judge.JudgeName, Metrics: []judge.MetricConfig{
		{Name: metricP99, Groups: []string{"latency"}, Analysis: lat},
		{Name: metricRate, Groups: []string{"errors"}, Analysis: rate},
	}}
	th := judge.Thresholds{Pass: sch.Pass, Marginal: sch.Marginal}
	if err := th.Validate(); err != nil {
		return nil, fmt.Errorf("kayenta judge: %w", err)
	}
	return func(p99, errRate providers.Pair, rng *rand.Rand) (float64, error) {
		pairs := []judge.MetricSetPair{
			{Name: metricP99, Control: nonNil(p99.Baseline), Experiment: nonNil(p99.Canary)},
			{Name: metricRate, Control: nonNil(errRate.Baseline), Experiment: nonNil(errRate.Canary)},
		}
		res, err := judge.Judge(cc, th, pairs, judge.WithNoise(rng))
		if err != nil {
			return 0, fmt.Errorf("kayenta judge: %w", err)
		}
		return float64(res.Score.Score), nil
	}, nil
}

func nonNil(v []float64) []float64 {
	if v == nil {
		return []float64{}
	}
	return v
}
