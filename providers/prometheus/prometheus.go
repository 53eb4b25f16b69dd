// Package prometheus fetches canary and baseline series from a Prometheus-compatible HTTP API
// (Prometheus, Thanos, Mimir, VictoriaMetrics) for the Kayenta-style judge.
//
// Every metric is a PromQL template rendered once per cohort (text/template, missing keys are
// errors) and fetched with a range query over the judged window; the ready-made query sets
// ("builtin", "app-labels", see querysets.go) cover the latency and error_rate kinds, and the
// query kind takes a user template. Preflight checks that every query renders, parses and tells
// the cohorts apart before a rollout moves any traffic. BuildKayentaQuery turns a Kayenta
// CanaryConfig's Prometheus query fields into the PromQL that Kayenta itself would run.
package prometheus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/canaryctl/canaryctl/providers"
)

// QueryRanger is the one method of client_golang's v1.API that the provider needs; v1.API
// satisfies it, and tests substitute a small fake.
type QueryRanger interface {
	QueryRange(ctx context.Context, query string, r v1.Range, opts ...v1.Option) (model.Value, v1.Warnings, error)
}

// v1.API satisfies QueryRanger (client_golang v1.23.2; v1.25 added an Infos result, so a move
// to it changes this signature).
var _ QueryRanger = v1.API(nil)

// Errors matched with errors.Is (besides providers.ErrNoData for an empty answer).
var (
	// ErrManySeries: a query returned more than one series; it must aggregate to one per cohort.
	ErrManySeries = errors.New("query returned more than one series")
	// ErrSameSeries: the baseline and canary queries select the same series, so the comparison
	// would be a series against itself.
	ErrSameSeries = errors.New("baseline and canary select the same series")
	// ErrUnexpectedResult: the answer is not a range vector of float samples.
	ErrUnexpectedResult = errors.New("unexpected query result")
)

// maxPoints is Prometheus's limit on the points of one range query.
const maxPoints = 11000

// Provider fetches per-step series for baseline and canary. It is safe for concurrent use.
type Provider struct {
	api QueryRanger
	cfg Config
	qs  querySet
	log *slog.Logger

	mu    sync.Mutex
	tmpls map[string]*template.Template
}

// New builds a Provider on client_golang's HTTP API client.
func New(cfg Config) (*Provider, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rt, err := cfg.roundTripper()
	if err != nil {
		return nil, err
	}
	client, err := api.NewClient(api.Config{Address: cfg.URL, RoundTripper: rt})
	if err != nil {
		return nil, &ConfigError{Field: "url", Err: fmt.Errorf("build API client: %w", err)}
	}
	return newProvider(cfg, v1.NewAPI(client))
}

// NewWithAPI builds a Provider on any QueryRanger (a fake in tests, or a v1.API built elsewhere);
// cfg.URL is not required and the connection settings are ignored.
func NewWithAPI(cfg Config, qr QueryRanger) (*Provider, error) {
	if qr == nil {
		return nil, configErrorf("api", "is nil")
	}
	if cfg.URL == "" {
		cfg.URL = "http://127.0.0.1:9090"
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return newProvider(cfg, qr)
}

func newProvider(cfg Config, qr QueryRanger) (*Provider, error) {
	qs, err := lookupQuerySet(cfg)
	if err != nil {
		return nil, err
	}
	p := &Provider{api: qr, cfg: cfg, qs: qs, log: cfg.Logger, tmpls: map[string]*template.Template{}}
	// The ready-made templates are ours: fail here, not in the middle of a rollout.
	for _, t := range []string{qs.Latency, qs.ErrorRate} {
		if _, err := p.parse(t); err != nil {
			return nil, fmt.Errorf("prometheus: query set %s: %w", cfg.QuerySet, err)
		}
	}
	return p, nil
}

// Vars are the variables a query template sees.
type Vars struct {
	Cohort      string // the cohort's value of CohortLabel, e.g. "canary"
	CohortLabel string // e.g. "cohort"
	Service     string // Config.Service
	Selector    string // label matchers selecting the cohort, e.g. `cohort="canary",namespace="shop"`
	Step        string // the step of the range query as a PromQL duration, e.g. "30s" (see Points)
	Window      string // the rate window: the window's step or Config.MinWindow, the larger; equal to Step
	Quantile    string // the metric's quantile, e.g. "0.99" (0.99 when unset)
	// Route and RouteLabel: the route the query is narrowed to (Config.Route), "" for the service
	Route, RouteLabel string
}

func (v Vars) asMap() map[string]any {
	return map[string]any{
		"Cohort": v.Cohort, "CohortLabel": v.CohortLabel, "Service": v.Service, "Selector": v.Selector,
		"Step": v.Step, "Window": v.Window, "Quantile": v.Quantile, "Route": v.Route, "RouteLabel": v.RouteLabel,
	}
}

// Vars returns the template variables for metric m, cohort c and window w.
func (p *Provider) Vars(m providers.Metric, c providers.Cohort, w providers.Window) Vars {
	val := string(c)
	if v, ok := p.cfg.CohortValues[c]; ok && v != "" {
		val = v
	}
	sel := p.cfg.CohortLabel + "=" + strconv.Quote(val)
	if s := strings.Trim(strings.TrimSpace(p.cfg.Selector), ","); s != "" {
		sel += "," + s
	}
	if p.cfg.RouteLabel != "" && p.cfg.Route != "" {
		sel += "," + p.cfg.RouteLabel + "=" + strconv.Quote(p.cfg.Route)
	}
	step := w.Step
	if step <= 0 {
		step = time.Minute
	}
	step = max(step, p.cfg.MinWindow) // the points are one rate window apart (Points)
	q := m.Quantile
	if q <= 0 || q >= 1 {
		q = 0.99
	}
	return Vars{
		Cohort: val, CohortLabel: p.cfg.CohortLabel, Service: p.cfg.Service, Selector: sel,
		Step: promDuration(step), Window: promDuration(step),
		Quantile: strconv.FormatFloat(q, 'f', -1, 64), Route: p.cfg.Route, RouteLabel: p.cfg.RouteLabel,
	}
}

// promDuration renders d as a PromQL duration ("30s", "1m30s", "500ms").
func promDuration(d time.Duration) string {
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return model.Duration(d).String()
}

// Render returns the PromQL of metric m for cohort c over window w.
func (p *Provider) Render(m providers.Metric, c providers.Cohort, w providers.Window) (string, error) {
	src, err := p.qs.template(m)
	if err != nil {
		return "", err
	}
	t, err := p.parse(src)
	if err != nil {
		return "", &ConfigError{Field: metricField(m, "query"), Err: err}
	}
	var b strings.Builder
	if err := t.Execute(&b, p.Vars(m, c, w).asMap()); err != nil {
		return "", &ConfigError{Field: metricField(m, "query"),
			Err: fmt.Errorf("render for %s: %w (variables: .Cohort .CohortLabel .Service .Selector .Step .Window .Quantile .Route .RouteLabel)", c, err)}
	}
	out := strings.TrimSpace(b.String())
	if out == "" {
		return "", configErrorf(metricField(m, "query"), "renders to an empty query for %s", c)
	}
	return out, nil
}

func (p *Provider) parse(src string) (*template.Template, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.tmpls[src]; ok {
		return t, nil
	}
	t, err := template.New("query").Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	if len(p.tmpls) < 256 {
		p.tmpls[src] = t
	}
	return t, nil
}

// Control returns the cohort rendered for the control side of a Pair (Config.Control).
func (p *Provider) Control() providers.Cohort { return p.cfg.Control }

// CohortSeries fetches metric m for cohort c alone over window w (before/after judging compares
// stable's series before a switch with the canary's after it). An empty answer is
// providers.ErrNoData (wrapped).
func (p *Provider) CohortSeries(ctx context.Context, m providers.Metric, c providers.Cohort, w providers.Window) ([]float64, error) {
	if err := checkWindow(w); err != nil {
		return nil, err
	}
	q, err := p.Render(m, c, w)
	if err != nil {
		return nil, err
	}
	w, ok := p.Points(w)
	if !ok {
		return nil, fmt.Errorf("%w: the window %s..%s is shorter than one point (%s)", providers.ErrNoData,
			w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339), w.Step)
	}
	vals, _, err := p.series(ctx, m.Name, c, q, w)
	return vals, err
}

// Points is the range query that gives non-overlapping points for window w: the rate window of a
// query set is the larger of w.Step and Config.MinWindow (Vars.Window), and the points are that far
// apart, so that each point's rate covers its own stretch of time. Points closer than their rate
// window share data (1m windows every 10s share 5/6 of it), and Mann-Whitney, which takes every point
// as an independent draw, then fails far more often than its confidence level says (issue 14
// measured 27-36% A/A fail-fast per 5-minute step). ok is false when the window holds no point.
func (p *Provider) Points(w providers.Window) (q providers.Window, ok bool) {
	q = providers.Window{Start: w.Start, End: w.End, Step: max(w.Step, p.cfg.MinWindow)}
	return q, !q.End.Before(q.Start)
}

// Pair fetches metric m for the control (baseline, or stable with Config.Control) and the canary
// over window w, one value per step (NaN where a step has no sample). Latency is in milliseconds and error rate in percent when they come from a
// query set; a query-kind metric is returned as the query computes it. An empty answer for
// either cohort is providers.ErrNoData (wrapped).
func (p *Provider) Pair(ctx context.Context, m providers.Metric, w providers.Window) (providers.Pair, error) {
	if err := checkWindow(w); err != nil {
		return providers.Pair{}, err
	}
	bq, err := p.Render(m, p.cfg.Control, w)
	if err != nil {
		return providers.Pair{}, err
	}
	cq, err := p.Render(m, providers.Canary, w)
	if err != nil {
		return providers.Pair{}, err
	}
	return p.PairQueries(ctx, m.Name, bq, cq, w)
}

// PairQueries fetches two already rendered queries (e.g. built from a Kayenta config by
// BuildKayentaQuery) as control (baseline, or stable with Config.Control) and canary (experiment).
func (p *Provider) PairQueries(ctx context.Context, name, baselineQuery, canaryQuery string, w providers.Window) (providers.Pair, error) {
	if err := checkWindow(w); err != nil {
		return providers.Pair{}, err
	}
	w, ok := p.Points(w)
	if !ok {
		return providers.Pair{}, fmt.Errorf("%w: the window %s..%s is shorter than one point (%s)", providers.ErrNoData,
			w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339), w.Step)
	}
	var (
		wg         sync.WaitGroup
		bv, cv     []float64
		bs, cs     *model.SampleStream
		bErr, cErr error
	)
	wg.Go(func() { bv, bs, bErr = p.series(ctx, name, p.cfg.Control, baselineQuery, w) })
	wg.Go(func() { cv, cs, cErr = p.series(ctx, name, providers.Canary, canaryQuery, w) })
	wg.Wait()
	// A query error outranks no data: it counts toward the caller's error limit.
	for _, err := range []error{bErr, cErr} {
		if err != nil && !errors.Is(err, providers.ErrNoData) {
			return providers.Pair{}, err
		}
	}
	if err := errors.Join(bErr, cErr); err != nil {
		return providers.Pair{}, err
	}
	// The preflight could not compare series before the cohorts had data; now they have: a
	// query that reads one series for both would judge a series against itself.
	if err := sameSeries(fmt.Sprintf("metrics[%s].query", name), bs.Metric, cs.Metric, bs.Values, cs.Values, 3); err != nil {
		return providers.Pair{}, err
	}
	return providers.Pair{Baseline: bv, Canary: cv}, nil
}

func checkWindow(w providers.Window) error {
	switch {
	case w.Start.IsZero() || w.End.IsZero():
		return &ConfigError{Field: "window", Err: errors.New("start and end are required")}
	case w.Step <= 0:
		return &ConfigError{Field: "window.step", Err: fmt.Errorf("%v must be positive, e.g. 30s", w.Step)}
	case w.End.Before(w.Start):
		return &ConfigError{Field: "window.end", Err: fmt.Errorf("%s is before start %s", w.End.Format(time.RFC3339), w.Start.Format(time.RFC3339))}
	case w.End.Sub(w.Start)/w.Step >= maxPoints:
		return &ConfigError{Field: "window.step", Err: fmt.Errorf("%v gives more than %d points over %v; use a larger step", w.Step, maxPoints, w.End.Sub(w.Start))}
	}
	return nil
}

// QueryError is a query that failed after its retries. It names the metric, the cohort and the
// PromQL; Unwrap gives the cause (a *v1.Error for an API error).
type QueryError struct {
	Metric   string
	Cohort   providers.Cohort
	Query    string
	Attempts int
	Err      error
}

func (e *QueryError) Error() string {
	s := fmt.Sprintf("prometheus: query %s for %s", e.Metric, e.Cohort)
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (%d attempts)", e.Attempts)
	}
	return s + ": " + describe(e.Err) + " [query: " + e.Query + "]"
}

func (e *QueryError) Unwrap() error { return e.Err }

// InvalidInput is true when the server rejected the query itself (bad_data: a PromQL syntax
// error or a bad parameter): the configuration must change, retrying cannot help.
func (e *QueryError) InvalidInput() bool {
	var ae *v1.Error
	return errors.As(e.Err, &ae) && ae.Type == v1.ErrBadData
}

// describe renders an API error with the server's own message when the body carries one.
func describe(err error) string {
	var ae *v1.Error
	if !errors.As(err, &ae) || ae.Detail == "" {
		return err.Error()
	}
	var body struct {
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}
	if json.Unmarshal([]byte(ae.Detail), &body) == nil && body.Error != "" {
		return fmt.Sprintf("%s: %s: %s", ae.Type, body.ErrorType, body.Error)
	}
	d := strings.Join(strings.Fields(ae.Detail), " ")
	if len(d) > 200 {
		d = d[:200] + "..."
	}
	return ae.Error() + ": " + d
}

// credentialError is a failure to read a secret file: a configuration problem, never retried.
type credentialError struct{ err error }

func (e *credentialError) Error() string { return e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

// retryable reports whether a failed attempt may succeed when repeated: 5xx answers, server-side
// timeouts, the attempt's own deadline and network errors; never 4xx, bad_data or execution
// errors.
func retryable(err error) bool {
	var ce *credentialError
	if errors.As(err, &ce) {
		return false
	}
	var ae *v1.Error
	if errors.As(err, &ae) {
		return ae.Type == v1.ErrServer || ae.Type == v1.ErrTimeout
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue)
}

// series runs one range query with retries and aligns the answer to the window's steps.
func (p *Provider) series(ctx context.Context, name string, c providers.Cohort, q string, w providers.Window) ([]float64, *model.SampleStream, error) {
	val, err := p.queryRange(ctx, name, c, q, w)
	if err != nil {
		return nil, nil, err
	}
	vals, s, err := alignMatrix(val, w)
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus: query %s for %s: %w [query: %s]", name, c, err, q)
	}
	return vals, s, nil
}

func (p *Provider) queryRange(ctx context.Context, name string, c providers.Cohort, q string, w providers.Window) (model.Value, error) {
	r := v1.Range{Start: w.Start, End: w.End, Step: w.Step}
	backoff := p.cfg.Backoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		val, warnings, err := p.api.QueryRange(actx, q, r, v1.WithTimeout(p.cfg.Timeout))
		cancel()
		if len(warnings) > 0 {
			p.log.Warn("prometheus returned warnings", "metric", name, "cohort", string(c), "warnings", []string(warnings))
		}
		if err == nil {
			return val, nil
		}
		if ctx.Err() != nil {
			return nil, &QueryError{Metric: name, Cohort: c, Query: q, Attempts: attempt, Err: context.Cause(ctx)}
		}
		if !retryable(err) || attempt > p.cfg.Retries {
			return nil, &QueryError{Metric: name, Cohort: c, Query: q, Attempts: attempt, Err: err}
		}
		p.log.Info("prometheus query failed; retrying", "metric", name, "cohort", string(c),
			"attempt", attempt, "backoff", backoff, "err", describe(err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, &QueryError{Metric: name, Cohort: c, Query: q, Attempts: attempt, Err: context.Cause(ctx)}
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// alignMatrix turns a one-series range-query answer into one value per step of w (NaN where the
// step has no sample). No series, or a series of NaN only, is providers.ErrNoData.
func alignMatrix(val model.Value, w providers.Window) ([]float64, *model.SampleStream, error) {
	if val == nil {
		return nil, nil, fmt.Errorf("%w: empty answer", providers.ErrNoData)
	}
	m, ok := val.(model.Matrix)
	if !ok {
		return nil, nil, fmt.Errorf("%w: a range query answered with a %s, want a matrix", ErrUnexpectedResult, val.Type())
	}
	switch len(m) {
	case 0:
		return nil, nil, fmt.Errorf("%w: the query matched no series", providers.ErrNoData)
	case 1:
	default:
		return nil, nil, fmt.Errorf("%w: %d series (%s); aggregate them to one, e.g. sum by (le) (...) or avg(...)",
			ErrManySeries, len(m), seriesNames(m, 3))
	}
	s := m[0]
	if len(s.Values) == 0 && len(s.Histograms) > 0 {
		return nil, nil, fmt.Errorf("%w: native histogram samples; wrap the query in histogram_quantile(...) or histogram_count(...)", ErrUnexpectedResult)
	}
	n := int(w.End.Sub(w.Start)/w.Step) + 1
	out := make([]float64, n)
	for i := range out {
		out[i] = math.NaN()
	}
	data := false
	start := w.Start.UnixMilli()
	stepMs := float64(w.Step.Milliseconds())
	if stepMs <= 0 {
		stepMs = 1
	}
	for _, sp := range s.Values {
		i := int(math.Round(float64(int64(sp.Timestamp)-start) / stepMs))
		if i < 0 || i >= n {
			continue
		}
		v := float64(sp.Value)
		out[i] = v
		if !math.IsNaN(v) {
			data = true
		}
	}
	if !data {
		return nil, nil, fmt.Errorf("%w: the series %s has no value in the window", providers.ErrNoData, s.Metric)
	}
	return out, s, nil
}

func seriesNames(m model.Matrix, limit int) string {
	names := make([]string, 0, limit)
	for i, s := range m {
		if i == limit {
			names = append(names, "...")
			break
		}
		names = append(names, s.Metric.String())
	}
	return strings.Join(names, ", ")
}

// sortedLabelDiff lists the label names whose values differ between a and b.
func sortedLabelDiff(a, b model.Metric) []string {
	var d []string
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			d = append(d, string(k))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, string(k))
		}
	}
	sort.Strings(d)
	return slices.Compact(d)
}
