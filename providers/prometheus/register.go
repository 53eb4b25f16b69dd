package prometheus

import "github.com/canaryctl/canaryctl/providers"

// The metrics type prometheus (metrics.prometheus, Spec), as the rollout spec knows it.
func init() { providers.RegisterMetrics("prometheus", metricsType{}) }

type metricsType struct{}

func (metricsType) Section() any { return &Spec{} }

func (metricsType) Example() string { return "prometheus: {url: http://127.0.0.1:9090}" }

func (metricsType) Problems(section any) []providers.Problem {
	var out []providers.Problem
	for _, p := range section.(*Spec).Problems() {
		out = append(out, providers.Problem{Field: p.Field, Msg: p.Err.Error()})
	}
	return out
}

// Gateway: Prometheus scrapes the cohorts' own metrics, whatever routes them.
func (metricsType) Gateway() (name, origin string) { return "", "" }

// PerRequest: series of a resolution, not requests.
func (metricsType) PerRequest() bool { return false }
