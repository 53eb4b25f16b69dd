package prometheus

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

func TestRenderQuerySets(t *testing.T) {
	t.Parallel()
	w := providers.Window{Start: testStart, End: testStart.Add(time.Hour), Step: 30 * time.Second}
	tests := []struct {
		name   string
		cfg    Config
		metric providers.Metric
		cohort providers.Cohort
		want   string
	}{
		{"builtin latency", Config{}, latency, providers.Canary,
			`histogram_quantile(0.99, sum by (le) (rate(canaryctl_proxy_request_duration_seconds_bucket{cohort="canary",route="split"}[30s]))) * 1000`},
		{"builtin latency P50 with a long step", Config{}, providers.Metric{Name: "p50", Kind: providers.LatencyQuantile, Quantile: 0.5}, providers.Baseline,
			`histogram_quantile(0.5, sum by (le) (rate(canaryctl_proxy_request_duration_seconds_bucket{cohort="baseline",route="split"}[30s]))) * 1000`},
		{"builtin error rate with extra selector", Config{Selector: `env="prod"`}, errorRate, providers.Baseline,
			`100 * (sum(rate(canaryctl_proxy_requests_total{cohort="baseline",env="prod",route="split",code=~"5.."}[30s])) or vector(0)) / sum(rate(canaryctl_proxy_requests_total{cohort="baseline",env="prod",route="split"}[30s]))`},
		{"app-labels Micrometer", Config{QuerySet: "app-labels", CohortLabel: "track", Service: "checkout"}, errorRate, providers.Canary,
			`100 * (sum(rate(http_server_requests_seconds_count{track="canary",service="checkout",status=~"5.."}[30s])) or vector(0)) / sum(rate(http_server_requests_seconds_count{track="canary",service="checkout"}[30s]))`},
		{"app-labels client_golang with cohort values", Config{QuerySet: "app-labels", AppMetric: "http_request_duration_seconds", CohortLabel: "version",
			CohortValues: map[providers.Cohort]string{providers.Canary: "v2"}, MinWindow: 2 * time.Minute}, latency, providers.Canary,
			`histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{version="v2"}[2m]))) * 1000`},
		{"query kind with every variable", Config{Service: "svc"},
			providers.Metric{Name: "q", Kind: providers.Query, Query: `{{.Cohort}} {{.CohortLabel}} {{.Service}} {{.Selector}} {{.Step}} {{.Window}} {{.Quantile}}`}, providers.Canary,
			`canary cohort svc cohort="canary" 30s 30s 0.99`},
		{"app-labels narrowed to a route", Config{QuerySet: "app-labels", Service: "checkout", RouteLabel: "uri", Route: "/checkout/pay"}, errorRate, providers.Canary,
			`100 * (sum(rate(http_server_requests_seconds_count{cohort="canary",uri="/checkout/pay",service="checkout",status=~"5.."}[30s])) or vector(0)) / sum(rate(http_server_requests_seconds_count{cohort="canary",uri="/checkout/pay",service="checkout"}[30s]))`},
		{"query kind sees the route", Config{RouteLabel: "handler", Route: "/pay"},
			providers.Metric{Name: "q", Kind: providers.Query, Query: `{{.RouteLabel}}={{.Route}} {{.Selector}}`}, providers.Canary,
			`handler=/pay cohort="canary",handler="/pay"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewWithAPI(tc.cfg, stubRanger{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Render(tc.metric, tc.cohort, w)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tc.want {
				t.Errorf("Render\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	t.Parallel()
	p, err := NewWithAPI(Config{}, stubRanger{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		metric providers.Metric
		want   string
	}{
		{"missing key", providers.Metric{Name: "m", Kind: providers.Query, Query: `up{ {{- .Namespace}} }`}, `metrics[m].query: render for canary`},
		{"template syntax", providers.Metric{Name: "m", Kind: providers.Query, Query: `up{{{.Selector}}}`}, `metrics[m].query: parse template`},
		{"empty query", providers.Metric{Name: "m", Kind: providers.Query}, `metrics[m].query: is empty`},
		{"renders empty", providers.Metric{Name: "m", Kind: providers.Query, Query: `{{if false}}x{{end}}`}, `renders to an empty query`},
		{"unknown kind", providers.Metric{Name: "m", Kind: "cpu"}, `metrics[m].kind: unknown kind "cpu"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := p.Render(tc.metric, providers.Canary, testWindow)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a ConfigError containing %q", err, tc.want)
			}
		})
	}
}
