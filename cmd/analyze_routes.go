package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/canaryctl/canaryctl/judge"
	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/prometheus"
)

// Per-route judgements of canaryctl analyze (--route-label, --route): every query of the spec's
// metrics is narrowed to one route by the matcher LABEL="route" (and templates see .Route), and each
// route is judged on its own beside the service. Multiple testing, written down: with M routes each
// metric's Mann-Whitney interval is computed at 1-(1-0.98)/M instead of 0.98 (Bonferroni), so the
// chance that any route's metric is classified High although no route changed stays at the 2% of
// one comparison. A route without data is judged by the metric's mustHaveData rule, as the service.

// analyzeRoute is one route's judgement.
type analyzeRoute struct {
	Route string `json:"route"`
	// ConfLevel is the confidence level every metric of the route was judged at.
	ConfLevel float64       `json:"confLevel"`
	Result    *judge.Result `json:"result"`
}

// analyzeRoutesJSON is analyze's JSON with routes: Kayenta's result for the service, then the routes,
// the worst first.
type analyzeRoutesJSON struct {
	*judge.Result
	RouteLabel string         `json:"routeLabel"`
	Routes     []analyzeRoute `json:"routes"`
}

// checkRoutes refuses route flags that cannot be honoured, before anything is queried.
func (o *analyzeOptions) checkRoutes(metrics []analyzeMetric, pcfg prometheus.Config) error {
	switch {
	case o.routeLabel == "" && len(o.routes) == 0:
		return nil
	case o.routeLabel == "":
		return usageErrorf("--route needs --route-label: the label that tells routes apart in your metrics (e.g. uri for Micrometer, handler for promhttp)")
	case len(o.routes) == 0:
		return usageErrorf("--route-label %s: list the routes to judge with --route VALUE (repeatable), e.g. --route /checkout/pay", o.routeLabel)
	case !validPromLabel(o.routeLabel):
		return usageErrorf("--route-label %q is not a Prometheus label name", o.routeLabel)
	case o.canaryConfig != "":
		return usageErrorf("--route-label works with --spec (its queries are rendered per route); a Kayenta config's queries are fixed: add the route to its templates instead")
	case pcfg.QuerySet == "builtin" && slices.ContainsFunc(metrics, func(m analyzeMetric) bool { return m.metric != nil && m.metric.Kind != providers.Query }):
		return usageErrorf("--route-label: the built-in proxy's Prometheus metrics have no per-route label (their route label says split or rule); judge routes in mode sequential (analysis.routes) or use --query-set app-labels over your application's metrics")
	}
	seen := map[string]bool{}
	for _, r := range o.routes {
		if r == "" || seen[r] {
			return usageErrorf("--route %q: give each route once, non-empty", r)
		}
		seen[r] = true
	}
	return nil
}

// validPromLabel reports whether s is a Prometheus label name.
func validPromLabel(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// judgeWindow fetches every metric's pair from prov and judges them.
func (o *analyzeOptions) judgeWindow(ctx context.Context, prov *prometheus.Provider, metrics []analyzeMetric, cc *judge.CanaryConfig,
	th judge.Thresholds, w providers.Window, what string, opts ...judge.Option) (*judge.Result, error) {
	pairs := make([]judge.MetricSetPair, 0, len(metrics))
	for _, m := range metrics {
		var pair providers.Pair
		var err error
		if m.metric != nil {
			pair, err = prov.Pair(ctx, *m.metric, w)
		} else {
			pair, err = prov.PairQueries(ctx, m.name, m.baseline, m.canary, w)
		}
		switch {
		case errors.Is(err, providers.ErrNoData):
			o.env.Logger.Warn("no data; the judge applies the metric's mustHaveData rule", "metric", m.name, "of", what, "err", err)
			pair = providers.Pair{}
		case err != nil:
			return nil, fmt.Errorf("analyze: fetch %s of %s: %w", m.name, what, err)
		}
		if pair.Baseline == nil {
			pair.Baseline = []float64{}
		}
		if pair.Canary == nil {
			pair.Canary = []float64{}
		}
		pairs = append(pairs, judge.MetricSetPair{Name: m.name, Control: pair.Baseline, Experiment: pair.Canary})
	}
	res, err := judge.Judge(cc, th, pairs, opts...)
	if err != nil {
		return nil, fmt.Errorf("analyze: judge %s: %w", what, err)
	}
	return res, nil
}

// judgeRoutes judges every --route at the Bonferroni level, the worst first.
func (o *analyzeOptions) judgeRoutes(ctx context.Context, pcfg prometheus.Config, metrics []analyzeMetric, cc *judge.CanaryConfig,
	th judge.Thresholds, w providers.Window) ([]analyzeRoute, error) {
	conf := 1 - (1-judge.ConfLevel)/float64(len(o.routes))
	out := make([]analyzeRoute, 0, len(o.routes))
	for _, rt := range o.routes {
		c := pcfg
		c.RouteLabel, c.Route = o.routeLabel, rt
		prov, err := prometheus.New(c)
		if err != nil {
			return nil, err
		}
		res, err := o.judgeWindow(ctx, prov, metrics, cc, th, w, "route "+rt, judge.WithConfLevel(conf))
		if err != nil {
			return nil, err
		}
		out = append(out, analyzeRoute{Route: rt, ConfLevel: conf, Result: res})
	}
	slices.SortStableFunc(out, func(a, b analyzeRoute) int {
		sa, sb := float64(a.Result.Score.Score), float64(b.Result.Score.Score)
		switch {
		case sa < sb || sa == sa && sb != sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
	return out, nil
}

// worstVerdict is the verdict of the service and its routes together: any Fail fails, else any
// Marginal is marginal.
func worstVerdict(res *judge.Result, routes []analyzeRoute) judge.Verdict {
	v := res.Score.Classification
	for _, r := range routes {
		switch r.Result.Score.Classification {
		case judge.VerdictFail:
			return judge.VerdictFail
		case judge.VerdictMarginal:
			if v == judge.VerdictPass {
				v = judge.VerdictMarginal
			}
		}
	}
	return v
}

// writeAnalyzeRoutes writes the routes after the service's result: JSON as analyzeRoutesJSON, text
// as one line per route and its metrics that did not pass.
func writeAnalyzeRoutes(w io.Writer, format string, res *judge.Result, label string, routes []analyzeRoute, th judge.Thresholds) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(analyzeRoutesJSON{Result: res, RouteLabel: label, Routes: routes})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(routes) > 0 {
		fmt.Fprintf(tw, "\nroutes by %s, the worst first (each metric at %.4g%% confidence: 98%% split over %d routes)\n", label, 100*routes[0].ConfLevel, len(routes))
	}
	fmt.Fprintln(tw, "ROUTE\tSCORE\tVERDICT\tMETRICS NOT PASSING")
	for _, r := range routes {
		var bad []string
		for _, m := range r.Result.Results {
			if m.Classification != "Pass" {
				bad = append(bad, fmt.Sprintf("%s %s", m.Name, m.Classification))
			}
		}
		fmt.Fprintf(tw, "%s\t%.4g\t%s\t%s\n", r.Route, float64(r.Result.Score.Score), r.Result.Score.Classification, joinOr(bad, "-"))
	}
	return tw.Flush()
}

func joinOr(s []string, empty string) string {
	if len(s) == 0 {
		return empty
	}
	out := s[0]
	for _, x := range s[1:] {
		out += ", " + x
	}
	return out
}
