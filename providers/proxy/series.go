package proxy

import (
	"fmt"
	"math"

	"github.com/canaryctl/canaryctl/analysis"
	"github.com/canaryctl/canaryctl/providers"
)

// Series turns recorded requests into one value per step of w for baseline and canary, the input
// of the Kayenta judge: for LatencyQuantile the m.Quantile of latency in milliseconds (R-7, as
// Kayenta computes percentiles), for ErrorRate the percentage of responses with status >= 500.
// Steps without requests are NaN. Requests routed by a rule (ByRule) and stable's requests are
// left out. It returns providers.ErrNoData when neither cohort has a request in the window.
func Series(reqs []providers.Request, m providers.Metric, w providers.Window) (providers.Pair, error) {
	if w.Step <= 0 || !w.End.After(w.Start) {
		return providers.Pair{}, fmt.Errorf("proxy series %q: window needs start < end and a positive step", m.Name)
	}
	switch m.Kind {
	case providers.LatencyQuantile:
		if !(m.Quantile > 0 && m.Quantile <= 1) {
			return providers.Pair{}, fmt.Errorf("proxy series %q: quantile %v must be in (0, 1], e.g. 0.99", m.Name, m.Quantile)
		}
	case providers.ErrorRate:
	default:
		return providers.Pair{}, fmt.Errorf("proxy series %q: kind %q is not supported by the built-in proxy (valid: %s, %s)",
			m.Name, m.Kind, providers.LatencyQuantile, providers.ErrorRate)
	}
	span := w.End.Sub(w.Start)
	steps := int(span / w.Step)
	if span%w.Step != 0 {
		steps++
	}
	type acc struct {
		lat      []float64
		n, fails int
	}
	var per [2][]acc // 0 baseline, 1 canary
	per[0], per[1] = make([]acc, steps), make([]acc, steps)
	any := false
	for _, r := range reqs {
		if r.ByRule || r.Time.Before(w.Start) || !r.Time.Before(w.End) {
			continue
		}
		var side int
		switch r.Cohort {
		case providers.Baseline:
			side = 0
		case providers.Canary:
			side = 1
		default:
			continue
		}
		any = true
		a := &per[side][int(r.Time.Sub(w.Start)/w.Step)]
		a.n++
		if r.Status >= 500 {
			a.fails++
		}
		if m.Kind == providers.LatencyQuantile {
			a.lat = append(a.lat, float64(r.Latency)/float64(1e6))
		}
	}
	if !any {
		return providers.Pair{}, fmt.Errorf("proxy series %q: no baseline or canary requests between %s and %s: %w",
			m.Name, w.Start.Format("15:04:05"), w.End.Format("15:04:05"), providers.ErrNoData)
	}
	var out [2][]float64
	for side := range 2 {
		out[side] = make([]float64, steps)
		for i, a := range per[side] {
			switch {
			case a.n == 0:
				out[side][i] = math.NaN()
			case m.Kind == providers.ErrorRate:
				out[side][i] = 100 * float64(a.fails) / float64(a.n)
			default:
				out[side][i] = analysis.Percentile(a.lat, m.Quantile*100)
			}
		}
	}
	return providers.Pair{Baseline: out[0], Canary: out[1]}, nil
}
