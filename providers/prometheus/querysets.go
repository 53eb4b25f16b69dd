package prometheus

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/canaryctl/canaryctl/providers"
)

// A query set maps the latency and error_rate metric kinds to PromQL templates. Each template is
// rendered per cohort with the variables described in Vars; the latency template must yield
// milliseconds and the error_rate template percent (0..100), the units of providers.Metric.
//
// # builtin
//
// The built-in proxy's own metrics (providers/proxy): the histogram
// canaryctl_proxy_request_duration_seconds{cohort,route} and the counter
// canaryctl_proxy_requests_total{cohort,code,route}. Only route="split" is compared: requests
// that a routing rule sent to a cohort are not a random sample. The error ratio adds
// "or vector(0)" to the 5xx numerator so that a cohort without any 5xx has 0 %, not "no data";
// a cohort without any request is still "no data" (the denominator is empty).
//
// # app-labels
//
// An application's own HTTP server histogram, carrying a label that tells the cohorts apart
// (CohortLabel, e.g. a pod label copied in by relabelling such as track="canary"):
// http_server_requests_seconds (Micrometer / Spring Boot, status code in "status"; enable
// management.metrics.distribution.percentiles-histogram so that _bucket series exist) or
// http_request_duration_seconds (client_golang's promhttp, status code in "code"); set
// Config.AppMetric. When Config.Service is set it is matched with Config.ServiceLabel.
// Note that a version label alone cannot separate baseline from stable (they run the same
// version): give baseline and canary pods a distinct label value.
//
// # Why there is no "kong" set
//
// Kong's Prometheus plugin labels its request counters and latency histograms by service,
// route, consumer, status code and workspace, but never by upstream target: requests that Kong
// balances across the stable, baseline and canary targets of one upstream all land in the same
// series. A query over them would compare a series with itself, so with the Kong gateway use
// either the kong-log metrics source (Kong's HTTP Log plugin feeding canaryctl per-request data
// tagged with the upstream target), or the app-labels set over the application's own metrics.
// The preflight check (Provider.Preflight) rejects such a query before traffic moves.
type querySet struct {
	Latency   string
	ErrorRate string
}

var querySets = map[string]func(cfg Config) (querySet, error){
	"builtin": func(Config) (querySet, error) {
		const hist = `canaryctl_proxy_request_duration_seconds_bucket`
		const reqs = `canaryctl_proxy_requests_total`
		return querySet{
			Latency: `histogram_quantile({{.Quantile}}, sum by (le) (rate(` + hist +
				`{ {{- .Selector}},route="split"}[{{.Window}}]))) * 1000`,
			ErrorRate: `100 * (sum(rate(` + reqs + `{ {{- .Selector}},route="split",code=~"5.."}[{{.Window}}])) or vector(0))` +
				` / sum(rate(` + reqs + `{ {{- .Selector}},route="split"}[{{.Window}}]))`,
		}, nil
	},
	"app-labels": func(cfg Config) (querySet, error) {
		var base, code string
		switch cfg.AppMetric {
		case "", "http_server_requests_seconds":
			base, code = "http_server_requests_seconds", "status"
		case "http_request_duration_seconds":
			base, code = "http_request_duration_seconds", "code"
		default:
			return querySet{}, configErrorf("appMetric",
				"unknown application metric %q (valid: http_server_requests_seconds, http_request_duration_seconds)", cfg.AppMetric)
		}
		sel := `{{.Selector}}`
		if cfg.Service != "" {
			sel += `,` + cfg.ServiceLabel + `=` + strconv.Quote(cfg.Service)
		}
		return querySet{
			Latency: `histogram_quantile({{.Quantile}}, sum by (le) (rate(` + base + `_bucket{ {{- ` + sel[2:] +
				`}[{{.Window}}]))) * 1000`,
			ErrorRate: `100 * (sum(rate(` + base + `_count{ {{- ` + sel[2:] + `,` + code + `=~"5.."}[{{.Window}}])) or vector(0))` +
				` / sum(rate(` + base + `_count{ {{- ` + sel[2:] + `}[{{.Window}}]))`,
		}, nil
	},
}

// QuerySetNames lists the names of the ready-made query sets.
func QuerySetNames() []string {
	names := make([]string, 0, len(querySets))
	for n := range querySets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupQuerySet(cfg Config) (querySet, error) {
	build, ok := querySets[cfg.QuerySet]
	if !ok {
		hint := ""
		if strings.EqualFold(cfg.QuerySet, "kong") {
			hint = "; Kong's Prometheus plugin does not label by upstream target, so it cannot tell canary from stable: use app-labels or the kong-log source"
		}
		return querySet{}, configErrorf("querySet", "unknown query set %q (valid: %s)%s",
			cfg.QuerySet, strings.Join(QuerySetNames(), ", "), hint)
	}
	return build(cfg)
}

// template returns the PromQL template of m from the query set, or m.Query for the query kind.
func (qs querySet) template(m providers.Metric) (string, error) {
	switch m.Kind {
	case providers.LatencyQuantile:
		return qs.Latency, nil
	case providers.ErrorRate:
		return qs.ErrorRate, nil
	case providers.Query:
		if strings.TrimSpace(m.Query) == "" {
			return "", configErrorf(metricField(m, "query"), "is empty: a metric of kind query needs a PromQL template")
		}
		return m.Query, nil
	default:
		return "", configErrorf(metricField(m, "kind"), "unknown kind %q (valid: %s, %s, %s)",
			m.Kind, providers.LatencyQuantile, providers.ErrorRate, providers.Query)
	}
}

func metricField(m providers.Metric, field string) string {
	return fmt.Sprintf("metrics[%s].%s", m.Name, field)
}
