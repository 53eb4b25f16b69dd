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
}

// RequestMetrics is the "builtin" metrics source: series computed from the gateway's request log.
// It also counts the requests each cohort served (SampleCounter).
type RequestMetrics struct{ cfg RequestMetricsConfig }

// NewRequestMetrics builds the builtin metrics source.
func NewRequestMetrics(cfg RequestMetricsConfig) (*RequestMetrics, error) {
	if cfg.Log == nil || cfg.Series == nil {
		return nil, errors.New("new request metrics: Log and Series are required")
	}
	return &RequestMetrics{cfg: cfg}, nil
}

// Pair fetches the window's requests and computes m's series.
func (r *RequestMetrics) Pair(ctx context.Context, m providers.Metric, w providers.Window) (providers.Pair, error) {
	reqs, err := r.cfg.Log.Requests(ctx, w.Start, w.End)
	if err != nil {
		return providers.Pair{}, fmt.Errorf("read request log: %w", err)
	}
	p, err := r.cfg.Series(reqs, m, w)
	if err != nil {
		return providers.Pair{}, fmt.Errorf("series of %s: %w", m.Name, err)
	}
	return p, nil
}

// Samples counts the requests baseline and canary served in the window (requests routed by a rule
// are not part of the comparison and not counted).
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
		case providers.Baseline:
			baseline++
		case providers.Canary:
			canary++
		}
	}
	return baseline, canary, nil
}
