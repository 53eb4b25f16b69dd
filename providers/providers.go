// Package providers holds the vocabulary shared by canaryctl's gateway and metrics adapters
// (sub-packages proxy, kong, prometheus, fake) and the rollout engine that drives them.
//
// Data flows one way: rollout defines the small interfaces it needs and imports the adapters; the
// adapters import only this package for the types they exchange, never rollout.
package providers

import (
	"errors"
	"fmt"
	"time"
)

// Cohort names a group of instances that receives a share of the traffic.
type Cohort string

// The three cohorts of a canary rollout.
const (
	Stable   Cohort = "stable"   // the version in production
	Baseline Cohort = "baseline" // a fresh copy of the stable version, compared with the canary
	Canary   Cohort = "canary"   // the new version
)

// Cohorts lists every cohort in a fixed order.
var Cohorts = []Cohort{Stable, Baseline, Canary}

// Valid reports whether c is one of the three cohorts.
func (c Cohort) Valid() bool { return c == Stable || c == Baseline || c == Canary }

// ParseCohort parses a cohort name.
func ParseCohort(s string) (Cohort, error) {
	c := Cohort(s)
	if !c.Valid() {
		return "", fmt.Errorf("unknown cohort %q (valid: stable, baseline, canary)", s)
	}
	return c, nil
}

// BasisPoints is the unit of a traffic share: 1 bp = 0.01 %, 10000 bp = 100 %.
const BasisPoints = 10000

// Split is the share of traffic for canary and baseline in basis points; stable gets the rest.
type Split struct {
	Canary   int `json:"canary"`
	Baseline int `json:"baseline"`
}

// Stable returns stable's share in basis points.
func (s Split) Stable() int { return BasisPoints - s.Canary - s.Baseline }

// Of returns the share of cohort c in basis points.
func (s Split) Of(c Cohort) int {
	switch c {
	case Canary:
		return s.Canary
	case Baseline:
		return s.Baseline
	default:
		return s.Stable()
	}
}

// Validate checks that both shares are within 0..10000 and add up to at most 10000.
func (s Split) Validate() error {
	if s.Canary < 0 || s.Baseline < 0 || s.Canary+s.Baseline > BasisPoints {
		return fmt.Errorf("%w: canary %d bp + baseline %d bp must be between 0 and %d bp",
			ErrInvalidSplit, s.Canary, s.Baseline, BasisPoints)
	}
	return nil
}

// String renders the split as percentages, e.g. "stable 95% baseline 2.5% canary 2.5%".
func (s Split) String() string {
	return fmt.Sprintf("stable %s baseline %s canary %s", Percent(s.Stable()), Percent(s.Baseline), Percent(s.Canary))
}

// Percent renders basis points as a percentage without trailing zeros ("2.5%", "10%").
func Percent(bp int) string {
	if bp%100 == 0 {
		return fmt.Sprintf("%d%%", bp/100)
	}
	s := fmt.Sprintf("%.2f", float64(bp)/100)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	return s + "%"
}

// PercentText renders a share given in percent (a step's weight) as Percent does, or as written
// when it is finer than a basis point.
func PercentText(p float64) string {
	bp, err := PercentToBP(p)
	if err != nil {
		return fmt.Sprintf("%v%%", p)
	}
	return Percent(bp)
}

// PercentToBP converts a percentage (2.5) to basis points (250), rejecting finer precision.
func PercentToBP(p float64) (int, error) {
	bp := p * 100
	r := int(bp + 0.5)
	if p < 0 || p > 100 || bp-float64(r) > 1e-6 || float64(r)-bp > 1e-6 {
		return 0, fmt.Errorf("percentage %v must be between 0 and 100 in steps of 0.01", p)
	}
	return r, nil
}

// Request is one proxied request as seen by a gateway: the raw material of request-level analysis.
type Request struct {
	Time    time.Time     `json:"time"` // when the response finished
	Cohort  Cohort        `json:"cohort"`
	Status  int           `json:"status"` // HTTP status; 502 for an upstream that could not be reached
	Latency time.Duration `json:"latency"`
	// ByRule is true when a routing rule (not the split) chose the cohort; such requests are
	// excluded from the canary/baseline comparison because they are not a random sample.
	ByRule bool `json:"byRule,omitempty"`
	// Instance names the upstream instance that answered (e.g. its host:port), "" when unknown. The
	// sequential guard uses it to tell a regression of the version (every canary instance worse)
	// from a bad moment of one instance (analysis/sequential, "per-instance episodes").
	Instance string `json:"instance,omitempty"`
	// Route names the route the request took, "" when the source does not record routes: Kong's
	// route name (kong-log), or the method and path template ("POST /checkout/{id}", RouteTemplate)
	// of the built-in proxy with routes on. Path is the request path without the query, when the
	// source keeps it (kong-log); analysis.routes matches pathPrefix and regex against it, or against
	// Route's template when it is empty.
	Route string `json:"route,omitempty"`
	Path  string `json:"path,omitempty"`
	// Client names who sent the request (the remote address, the trusted X-Forwarded-For hop, the
	// sticky hash key, Kong's consumer or client_ip), "" when unknown. The sequential tests use it
	// to notice sticky cohorts (a client confined to one cohort) and then judge clients, not
	// requests (analysis/sequential, "sticky cohorts").
	Client string `json:"client,omitempty"`
}

// Window is a time range to fetch metrics for, with the resolution of the series.
type Window struct {
	Start time.Time
	End   time.Time
	Step  time.Duration
}

// Pair is one metric's values for baseline (Kayenta's "control") and canary ("experiment").
// NaN marks a step without data.
type Pair struct {
	Baseline []float64
	Canary   []float64
}

// Errors shared by adapters, matched with errors.Is.
var (
	// ErrNoData: the source answered but holds no data for the query (judged by mustHaveData).
	ErrNoData = errors.New("no data")
	// ErrInvalidSplit: a split outside 0..10000 bp.
	ErrInvalidSplit = errors.New("invalid split")
	// ErrNotFound: the gateway entity (service, upstream, cohort) does not exist.
	ErrNotFound = errors.New("not found")
)

// MetricKind says how a metric is measured.
type MetricKind string

// The metric kinds. Units are chosen so that values are far above the 1e-4 absolute tolerance of
// Kayenta's root finder (a metric on a 1e-3 scale would always pass): milliseconds and percent.
const (
	// LatencyQuantile: the Quantile of request latency per step, in milliseconds.
	LatencyQuantile MetricKind = "latency"
	// ErrorRate: the share of responses with status >= 500 per step, in percent (0..100).
	ErrorRate MetricKind = "error_rate"
	// Query: a provider-specific query (a PromQL template for Prometheus).
	Query MetricKind = "query"
)

// Metric describes one metric to fetch for baseline and canary.
type Metric struct {
	Name     string     `json:"name"`
	Kind     MetricKind `json:"kind"`
	Quantile float64    `json:"quantile,omitempty"` // for LatencyQuantile, e.g. 0.99
	Query    string     `json:"query,omitempty"`    // for Query: the template, rendered per cohort
}
