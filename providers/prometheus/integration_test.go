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
		Duration: 10 * time.Second, AppMetrics: true, JudgedFrom: 3 * time.Second, MinScrapes: 10,
	})
	t.Logf("load: %d requests in %v; %d successful scrapes per target in the judged window", sc.Requests, sc.End.Sub(sc.Start).Round(time.Millisecond), sc.Scrapes)
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
	// The canary's delay is a floor; above it, P99 adds whatever the machine's stalls add (a point is
	// about the slowest of some 25 requests), so the ceiling only checks the unit: milliseconds, not
	// seconds (0.15) or microseconds (150,000).
	if !(bl > 0 && bl < cl) || !(cl >= 150 && cl < canaryCeilingMs) {
		t.Errorf("P99 medians baseline %.2f ms, canary %.2f ms; want baseline below canary and canary in 150-%d ms", bl, cl, canaryCeilingMs)
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
	// The app-labels set over the upstreams' own histogram (client_golang naming, cohort in "track").
	app, err := prometheus.New(prometheus.Config{URL: sc.Prometheus.URL, QuerySet: "app-labels", AppMetric: "http_request_duration_seconds",
		CohortLabel: "track", MinWindow: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	alat, err := app.Pair(t.Context(), providers.Metric{Name: "app-p99", Kind: providers.LatencyQuantile, Quantile: 0.99}, w)
	if err != nil {
		t.Fatalf("app-labels latency: %v", err)
	}
	abl, acl := median(alat.Baseline), median(alat.Canary)
	aer, err := app.Pair(t.Context(), providers.Metric{Name: "app-errors", Kind: providers.ErrorRate}, w)
	if err != nil {
		t.Fatalf("app-labels error rate: %v", err)
	}
	abe, ace := median(aer.Baseline), median(aer.Canary)
	t.Logf("app-labels: P99 medians baseline %.2f ms, canary %.2f ms; 5xx baseline %.2f %%, canary %.2f %%", abl, acl, abe, ace)
	if !(abl > 0 && abl < acl) || !(acl >= 150 && acl < canaryCeilingMs) || abe != 0 || ace < 5 || ace > 15 {
		t.Errorf("app-labels medians: P99 %.2f / %.2f ms, 5xx %.2f / %.2f %%; want baseline below canary, canary 150-%d ms, 0 and ~10 %%",
			abl, acl, abe, ace, canaryCeilingMs)
	}

	// No series for a cohort label value nobody has.
	_, err = p.Pair(t.Context(), providers.Metric{Name: "none", Kind: providers.Query,
		Query: `sum(rate(canaryctl_proxy_requests_total{cohort="{{.Cohort}}-absent"}[3s]))`}, w)
	if !errors.Is(err, providers.ErrNoData) {
		t.Errorf("absent cohort = %v, want ErrNoData", err)
	}
}

// canaryCeilingMs bounds the 150 ms canary's P99 median: far enough above the floor for a loaded
// machine's stalls, far enough below a unit error.
const canaryCeilingMs = 2000

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
