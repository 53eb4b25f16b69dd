package prometheus_test

import (
	"errors"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/prometheus"
	"github.com/canaryctl/canaryctl/providers/prometheus/promtest"
)

// TestRealPrometheus runs the provider against a real Prometheus scraping the built-in proxy in
// front of a fast baseline and a canary that takes at least 150 ms and fails every 10th request.
func TestRealPrometheus(t *testing.T) {
	t.Parallel()
	sc := promtest.RunScenario(t, promtest.ScenarioConfig{
		BaselineDelay: 2 * time.Millisecond, CanaryDelay: 150 * time.Millisecond, CanaryErrorEvery: 10,
		Duration: 10 * time.Second,
	})
	t.Logf("load: %d requests in %v", sc.Requests, sc.End.Sub(sc.Start).Round(time.Millisecond))
	p, err := prometheus.New(prometheus.Config{URL: sc.Prometheus.URL, MinWindow: 3 * time.Second, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w := providers.Window{Start: sc.Start.Add(3 * time.Second).Truncate(time.Second), End: sc.End.Truncate(time.Second), Step: time.Second}

	lat, err := p.Pair(t.Context(), providers.Metric{Name: "p99", Kind: providers.LatencyQuantile, Quantile: 0.99}, w)
	if err != nil {
		t.Fatalf("latency: %v", err)
	}
	bl, cl := median(lat.Baseline), median(lat.Canary)
	t.Logf("P99 latency medians over %d steps: baseline %.2f ms, canary %.2f ms", len(lat.Canary), bl, cl)
	// The canary's delay is a floor; the baseline's P99 depends on how busy the machine is.
	if !(bl > 0 && bl < cl) || !(cl >= 150 && cl < 400) {
		t.Errorf("P99 medians baseline %.2f ms, canary %.2f ms; want baseline below canary and canary in 150-400 ms", bl, cl)
	}

	er, err := p.Pair(t.Context(), providers.Metric{Name: "errors", Kind: providers.ErrorRate}, w)
	if err != nil {
		t.Fatalf("error rate: %v", err)
	}
	be, ce := median(er.Baseline), median(er.Canary)
	t.Logf("5xx rate medians: baseline %.2f %%, canary %.2f %%", be, ce)
	if be != 0 || ce < 5 || ce > 15 {
		t.Errorf("5xx rate medians baseline %.2f %%, canary %.2f %%; want 0 and ~10", be, ce)
	}

	if err := p.Preflight(t.Context(), []providers.Metric{
		{Name: "p99", Kind: providers.LatencyQuantile, Quantile: 0.99}, {Name: "errors", Kind: providers.ErrorRate},
	}, w); err != nil {
		t.Errorf("preflight of the builtin set: %v", err)
	}
	// A query whose selector sits in a comment compares the proxy's traffic with itself.
	err = p.Preflight(t.Context(), []providers.Metric{{Name: "all", Kind: providers.Query,
		Query: "sum(rate(canaryctl_proxy_requests_total[3s])) # {{.Selector}}"}}, w)
	if !errors.Is(err, prometheus.ErrSameSeries) {
		t.Errorf("preflight of a cohort-blind query = %v, want ErrSameSeries", err)
	}
	// A PromQL syntax error is reported by the real server as invalid input.
	err = p.Preflight(t.Context(), []providers.Metric{{Name: "bad", Kind: providers.Query,
		Query: "sum(rate(canaryctl_proxy_requests_total{ {{- .Selector}} }[3s])"}}, w)
	var qe *prometheus.QueryError
	if !errors.As(err, &qe) || !qe.InvalidInput() {
		t.Errorf("preflight of a syntax error = %v, want a QueryError with InvalidInput", err)
	}
	// No series for a cohort label value nobody has.
	_, err = p.Pair(t.Context(), providers.Metric{Name: "none", Kind: providers.Query,
		Query: `sum(rate(canaryctl_proxy_requests_total{cohort="{{.Cohort}}-absent"}[3s]))`}, w)
	if !errors.Is(err, providers.ErrNoData) {
		t.Errorf("absent cohort = %v, want ErrNoData", err)
	}
}

func median(xs []float64) float64 {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	sort.Float64s(v)
	return v[len(v)/2]
}
