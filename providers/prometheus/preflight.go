package prometheus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/common/model"

	"github.com/canaryctl/canaryctl/providers"
)

// preflightSteps is how many steps before the window's end the series comparison looks at.
const preflightSteps = 4

// Preflight checks every metric before a rollout shifts traffic:
//
//  1. the query renders for baseline and canary, and the two renderings differ (a template that
//     ignores .Selector/.Cohort would compare a series with itself);
//  2. the server parses and evaluates it: a short range query ending at w.End, so a PromQL
//     syntax error is a bad_data answer now rather than in the middle of the rollout;
//  3. once both cohorts have data, their answers are one series each and not the same series:
//     labelled answers must differ in their label sets (a difference beyond the cohort label is
//     logged), unlabelled aggregates must not agree on every non-zero value.
//
// The parse check is done by the server rather than by linking Prometheus's own PromQL parser
// (github.com/prometheus/prometheus/promql/parser): that module pulls in most of the Prometheus
// server's dependency tree, and the server-side check also validates functions and features of
// the actual backend (Thanos, Mimir and VictoriaMetrics accept slightly different PromQL).
//
// Before a rollout the canary usually has no data yet, so check 3 is skipped; Pair repeats it on
// every fetch (same labels and the same values at three or more non-zero steps is an
// ErrSameSeries ConfigError), which the rollout counts as a failed measurement and rolls back.
//
// All problems are returned together (errors.Join); template and same-series problems are
// *ConfigError, a rejected query is a *QueryError whose InvalidInput is true.
func (p *Provider) Preflight(ctx context.Context, metrics []providers.Metric, w providers.Window) error {
	var errs []error
	for _, m := range metrics {
		bq, err := p.Render(m, p.cfg.Control, w)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cq, err := p.Render(m, providers.Canary, w)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := p.PreflightQueries(ctx, m.Name, bq, cq, w); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PreflightQueries runs checks 1-3 of Preflight on two rendered queries.
func (p *Provider) PreflightQueries(ctx context.Context, name, baselineQuery, canaryQuery string, w providers.Window) error {
	field := fmt.Sprintf("metrics[%s].query", name)
	if baselineQuery == canaryQuery {
		return &ConfigError{Field: field, Err: fmt.Errorf("%w: baseline and canary render to the same PromQL %q; select the cohort with {{.Selector}} (or {{.CohortLabel}}=\"{{.Cohort}}\")",
			ErrSameSeries, canaryQuery)}
	}
	step := w.Step
	if step <= 0 {
		step = time.Minute
	}
	end := w.End
	if end.IsZero() {
		end = time.Now()
	}
	probe := providers.Window{Start: end.Add(-preflightSteps * step), End: end, Step: step}
	if !w.Start.IsZero() && w.Start.After(probe.Start) && !w.Start.After(end) {
		probe.Start = w.Start
	}
	bv, err := p.queryRange(ctx, name, p.cfg.Control, baselineQuery, probe)
	if err != nil {
		return err
	}
	cv, err := p.queryRange(ctx, name, providers.Canary, canaryQuery, probe)
	if err != nil {
		return err
	}
	bm, bok := bv.(model.Matrix)
	cm, cok := cv.(model.Matrix)
	if !bok || !cok {
		return fmt.Errorf("prometheus: preflight %s: %w: want a matrix from a range query", name, ErrUnexpectedResult)
	}
	for _, x := range []struct {
		c providers.Cohort
		m model.Matrix
	}{{p.cfg.Control, bm}, {providers.Canary, cm}} {
		if len(x.m) > 1 {
			return &ConfigError{Field: field, Err: fmt.Errorf("%w: %s returns %d series (%s); aggregate them to one, e.g. sum by (le) (...) or avg(...)",
				ErrManySeries, x.c, len(x.m), seriesNames(x.m, 3))}
		}
	}
	if len(bm) == 0 || len(cm) == 0 {
		p.log.Info("preflight: a cohort has no data yet; series comparison skipped", "metric", name,
			"baselineSeries", len(bm), "canarySeries", len(cm))
		return nil
	}
	bs, cs := bm[0], cm[0]
	if err := sameSeries(field, bs.Metric, cs.Metric, bs.Values, cs.Values, 1); err != nil {
		return err
	}
	if diff := sortedLabelDiff(bs.Metric, cs.Metric); len(diff) > 0 {
		if other := slices.DeleteFunc(diff, func(l string) bool { return l == p.cfg.CohortLabel }); len(other) > 0 {
			p.log.Warn("preflight: baseline and canary series differ in labels besides the cohort label",
				"metric", name, "cohortLabel", p.cfg.CohortLabel, "labels", other)
		}
	}
	return nil
}

// sameSeries returns an ErrSameSeries ConfigError when baseline and canary answers are one series:
// the same label set (an aggregation such as sum by (job) gives the same labels to different
// series, so labels alone are no proof) and the same values at every shared step, with at least
// minEvidence of them real and non-zero (two error rates of exactly 0 % prove nothing).
func sameSeries(field string, bl, cl model.Metric, bv, cv []model.SamplePair, minEvidence int) error {
	if !bl.Equal(cl) || !sameValues(bv, cv, minEvidence) {
		return nil
	}
	return &ConfigError{Field: field, Err: fmt.Errorf("%w: both queries return %s with identical values at every step; the cohort selector ({{.Selector}}) must reach every series selector in the query",
		ErrSameSeries, cl)}
}

// sameValues reports whether two answers agree at every shared timestamp, with at least
// minEvidence shared values that are real and non-zero.
func sameValues(a, b []model.SamplePair, minEvidence int) bool {
	bv := make(map[model.Time]float64, len(b))
	for _, s := range b {
		bv[s.Timestamp] = float64(s.Value)
	}
	evidence := 0
	for _, s := range a {
		v, ok := bv[s.Timestamp]
		if !ok {
			continue
		}
		av := float64(s.Value)
		if math.IsNaN(av) && math.IsNaN(v) {
			continue
		}
		if av != v {
			return false
		}
		if av != 0 && !math.IsNaN(av) {
			evidence++
		}
	}
	return evidence >= minEvidence
}
