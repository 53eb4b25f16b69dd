package cmd

import (
	"fmt"
	"os"

	"github.com/canaryctl/canaryctl/judge"
	"github.com/canaryctl/canaryctl/providers/prometheus"
	"github.com/canaryctl/canaryctl/rollout"
)

// loadSpec reads a rollout spec and turns its analysis section into the judge's canary config
// (the same mapping as rollout.NewKayentaJudge) and the metrics to render from the query set.
// The spec's thresholds replace the --pass/--marginal defaults unless those flags were given.
func (o *analyzeOptions) loadSpec(th *judge.Thresholds) (*judge.CanaryConfig, []analyzeMetric, error) {
	f, err := os.Open(o.spec)
	if err != nil {
		return nil, nil, usageErrorf("--spec: %v", err)
	}
	defer f.Close()
	spec, err := rollout.ParseSpec(f)
	if err != nil {
		return nil, nil, specProblems(o.spec, err)
	}
	a := spec.Analysis
	if !o.thresholdsSet {
		*th = judge.Thresholds{Pass: a.Thresholds.Pass, Marginal: a.Thresholds.Marginal}
	}
	cc, _ := rollout.KayentaConfig(spec.Service, a)
	defs := spec.MetricDefs()
	out := make([]analyzeMetric, 0, len(a.Metrics))
	for i, m := range a.Metrics {
		def := defs[i]
		out = append(out, analyzeMetric{name: m.Name, metric: &def})
	}
	if o.service == "" {
		o.service = spec.Service
	}
	if sp, ok := spec.Metrics.Section().(*prometheus.Spec); ok {
		cfg, err := sp.Config(spec.Service, o.env.Getenv, o.env.Logger)
		if err != nil {
			return nil, nil, fmt.Errorf("--spec %s: metrics.prometheus: %w", o.spec, err)
		}
		cfg.Control = spec.ControlCohort() // analysis.control stable: stable's series are the control
		o.specProm = &cfg
	}
	return cc, out, nil
}
