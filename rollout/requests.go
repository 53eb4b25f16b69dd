package rollout

import (
	"context"
	"errors"
	"fmt"

	"github.com/canaryctl/canaryctl/providers"
)

// SeriesFunc turns a gateway's requests into one metric's per-step series for baseline and canary
// (the built-in proxy's proxy.Series).
type SeriesFunc func(reqs []providers.Request, m providers.Metric, w providers.Window) (providers.Pair, error)

// RequestMetricsConfig configures RequestMetrics.
type RequestMetricsConfig struct {
	Log    RequestLog
	Series SeriesFunc
	// Control is the cohort whose requests fill the control side (providers.Pair.Baseline):
	// providers.Baseline (default) or providers.Stable (analysis.control stable; Spec.ControlCohort).
	Control providers.Cohort
}

// RequestMetrics is the "builtin" metrics source: series computed from the gateway's request log.
// It also counts the requests each cohort served (SampleCounter).
type RequestMetrics struct{ cfg RequestMetricsConfig }

// NewRequestMetrics builds the builtin metrics source.
func NewRequestMetrics(cfg RequestMetricsConfig) (*RequestMetrics, error) {
	if cfg.Log == nil || cfg.Series == nil {
		return nil, errors.New("new request metrics: Log and Series are required")
	}
	if cfg.Control == "" {
		cfg.Control = providers.Baseline
	}
	if cfg.Control != providers.Baseline && cfg.Control != providers.Stable {
		return nil, fmt.Errorf("new request metrics: control %q: use baseline or stable", cfg.Control)
	}
	return &RequestMetrics{cfg: cfg}, nil
}

// Control returns the cohort read as the control (ControlReader).
func (r *RequestMetrics) Control() providers.Cohort { return r.cfg.Control }

// Pair fetches the window's requests and computes m's series: the control's (baseline, or stable)
// as Pair.Baseline, the canary's as Pair.Canary.
func (r *RequestMetrics) Pair(ctx context.Context, m providers.Metric, w providers.Window) (providers.Pair, error) {
	reqs, err := r.cfg.Log.Requests(ctx, w.Start, w.End)
	if err != nil {
		return providers.Pair{}, fmt.Errorf("read request log: %w", err)
	}
	p, err := r.cfg.Series(asControl(reqs, r.cfg.Control), m, w)
	if err != nil {
		return providers.Pair{}, fmt.Errorf("series of %s: %w", m.Name, err)
	}
	return p, nil
}

// CohortSeries computes m's series of cohort c alone (CohortSeries: before/after judging).
func (r *RequestMetrics) CohortSeries(ctx context.Context, m providers.Metric, c providers.Cohort, w providers.Window) ([]float64, error) {
	reqs, err := r.cfg.Log.Requests(ctx, w.Start, w.End)
	if err != nil {
		return nil, fmt.Errorf("read request log: %w", err)
	}
	one := make([]providers.Request, 0, len(reqs))
	for _, q := range reqs {
		if q.Cohort == c {
			q.Cohort = providers.Canary // the series function's second side
			one = append(one, q)
		}
	}
	p, err := r.cfg.Series(one, m, w)
	if err != nil {
		return nil, fmt.Errorf("series of %s for %s: %w", m.Name, c, err)
	}
	return p.Canary, nil
}

// asControl relabels the control's requests as the baseline side of the series function (which
// compares baseline with canary) and leaves out the baseline's when the control is stable.
func asControl(reqs []providers.Request, control providers.Cohort) []providers.Request {
	if control != providers.Stable {
		return reqs
	}
	out := make([]providers.Request, 0, len(reqs))
	for _, q := range reqs {
		switch q.Cohort {
		case providers.Stable:
			q.Cohort = providers.Baseline
		case providers.Baseline:
			continue
		}
		out = append(out, q)
	}
	return out
}

// Samples counts the requests the control (baseline, or stable) and the canary served in the window
// (requests routed by a rule are not part of the comparison and not counted).
func (r *RequestMetrics) Samples(ctx context.Context, w providers.Window) (baseline, canary int, err error) {
	reqs, err := r.cfg.Log.Requests(ctx, w.Start, w.End)
	if err != nil {
		return 0, 0, fmt.Errorf("read request log: %w", err)
	}
	for _, q := range reqs {
		if q.ByRule {
			continue
		}
		switch q.Cohort {
		case r.cfg.Control:
			baseline++
		case providers.Canary:
			canary++
		}
	}
	return baseline, canary, nil
}
