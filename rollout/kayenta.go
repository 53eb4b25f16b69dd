package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/canaryctl/canaryctl/judge"
	"github.com/canaryctl/canaryctl/providers"
)

// KayentaJudgeConfig configures KayentaJudge.
type KayentaJudgeConfig struct {
	Analysis AnalysisSpec
	// Noise is the source of the noise Kayenta adds when both samples are constant; default: random.
	Noise judge.NormalSource
}

// KayentaJudge judges with package judge (Kayenta's NetflixACAJudge), configured from the spec's
// metrics: direction, critical, mustHaveData, nanStrategy, effect sizes (meanRatio), group and weight.
type KayentaJudge struct {
	// control names the control in explanations: baseline, or stable (analysis.control).
	control string
	cfg     *judge.CanaryConfig
	th      judge.Thresholds
	opts    []judge.Option
}

// NewKayentaJudge builds the canary config of the analysis section.
func NewKayentaJudge(cfg KayentaJudgeConfig) (*KayentaJudge, error) {
	cc, th := KayentaConfig("canaryctl", cfg.Analysis)
	if err := th.Validate(); err != nil {
		return nil, fmt.Errorf("new kayenta judge: %w", err)
	}
	var opts []judge.Option
	if cfg.Noise != nil {
		opts = append(opts, judge.WithNoise(cfg.Noise))
	}
	control := cfg.Analysis.Control
	if control == "" {
		control = ControlBaseline
	}
	return &KayentaJudge{control: control, cfg: cc, th: th, opts: opts}, nil
}

// KayentaConfig maps the analysis section to a Kayenta canary config (one metric per spec metric,
// in its group; direction, nanStrategy, critical, mustHaveData, mean-ratio effect sizes; group
// weights) and the score thresholds. canaryctl analyze judges past windows with the same mapping.
func KayentaConfig(name string, a AnalysisSpec) (*judge.CanaryConfig, judge.Thresholds) {
	cc := &judge.CanaryConfig{Name: name, Judge: judge.JudgeName}
	weights := map[string]float64{}
	for _, m := range a.Metrics {
		an := judge.DefaultAnalysis()
		an.Direction = judge.Direction(m.Direction)
		an.NaNStrategy = judge.NaNStrategy(m.NaNStrategy)
		an.Critical = m.Critical
		an.MustHaveData = m.MustHaveData
		an.EffectMeasure = judge.MeanRatio
		an.AllowedIncrease = m.EffectSize.AllowedIncrease
		an.AllowedDecrease = m.EffectSize.AllowedDecrease
		an.CriticalIncrease = m.EffectSize.CriticalIncrease
		an.CriticalDecrease = m.EffectSize.CriticalDecrease
		cc.Metrics = append(cc.Metrics, judge.MetricConfig{Name: m.Name, Groups: []string{m.Group}, Analysis: an})
		if m.Weight > 0 {
			weights[m.Group] = m.Weight
		}
	}
	if len(weights) > 0 {
		cc.Classifier.GroupWeights = weights
	}
	return cc, judge.Thresholds{Pass: a.Thresholds.Pass, Marginal: a.Thresholds.Marginal}
}

// Judge classifies every pair and scores the result.
func (k *KayentaJudge) Judge(_ context.Context, pairs []MetricPair) (Judgement, error) {
	in := make([]judge.MetricSetPair, len(pairs))
	for i, p := range pairs {
		b, c := p.Pair.Baseline, p.Pair.Canary
		if b == nil {
			b = []float64{}
		}
		if c == nil {
			c = []float64{}
		}
		in[i] = judge.MetricSetPair{Name: p.Metric.Name, Control: b, Experiment: c}
	}
	res, err := judge.Judge(k.cfg, k.th, in, k.opts...)
	if err != nil {
		return Judgement{}, fmt.Errorf("kayenta judge: %w", err)
	}
	if res == nil {
		return Judgement{}, errors.New("kayenta judge: no result")
	}
	out := Judgement{Score: float64(res.Score.Score)}
	for i, r := range res.Results {
		mr := MetricResult{Name: r.Name, Classification: string(r.Classification), Critical: r.Critical,
			Reason: r.ClassificationReason, BaselineMean: Number(r.ControlMetadata.Stats.Mean), CanaryMean: Number(r.ExperimentMetadata.Stats.Mean),
			BaselineCount: r.ControlMetadata.Stats.Count, CanaryCount: r.ExperimentMetadata.Stats.Count, Ratio: Number(r.Ratio())}
		if i < len(pairs) {
			mr.Group = pairs[i].Metric.Group
			mr.Unit = metricUnit(pairs[i].Metric.Kind)
		}
		if w := r.Why; w.Stage == judge.StageCompared {
			lo, hi, est := Number(w.CILower), Number(w.CIUpper), Number(w.Estimate)
			mr.CILower, mr.CIUpper, mr.Estimate = &lo, &hi, &est
			mr.EffectUnit = mr.Unit
		}
		if why := explain(r, k.control); why != "" {
			if mr.Reason == "" {
				mr.Reason = why
			} else {
				mr.Reason += "; " + why
			}
		}
		out.Metrics = append(out.Metrics, mr)
	}
	return out, nil
}

// explain gives a short reason for a classification Kayenta left without one; control names
// Kayenta's control (baseline or stable).
func explain(r judge.MetricResult, control string) string {
	w := r.Why
	switch w.Stage {
	case judge.StageNoData:
		return fmt.Sprintf("no data (canary %d points, %s %d)", w.CanaryCount, control, w.BaselineCount)
	case judge.StageIdentical, judge.StageSingleValue:
		return "canary and " + control + " hold the same values"
	case judge.StageCompared:
		ratio := "n/a"
		if !math.IsNaN(w.Ratio) && !math.IsInf(w.Ratio, 0) {
			ratio = fmt.Sprintf("%.3g", w.Ratio)
		}
		return fmt.Sprintf("canary mean %.3g vs %s %.3g (ratio %s), shift %.3g (98%% CI %.3g..%.3g)",
			float64(r.ExperimentMetadata.Stats.Mean), control, float64(r.ControlMetadata.Stats.Mean), ratio, w.Estimate, w.CILower, w.CIUpper)
	case judge.StageError:
		if w.Err != nil {
			return w.Err.Error()
		}
	}
	return ""
}

// metricUnit is the unit of a metric's values (providers.MetricKind): "ms", "%", or "" for a query,
// whose unit is whatever it returns.
func metricUnit(k providers.MetricKind) string {
	switch k {
	case providers.LatencyQuantile:
		return "ms"
	case providers.ErrorRate:
		return "%"
	}
	return ""
}
