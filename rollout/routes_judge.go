package rollout

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

// RouteJudge judges every route of the service on its own with the same sequential tests as the
// service (analysis/sequential), on the requests of that route only.
//
// Multiple testing. The rollout's false-rollback budget alpha (analysis.sequential.alpha) is split
// before any data is seen (Bonferroni): the service-level analyzer keeps (1-s)·alpha and each of
// the M route analyzers gets s·alpha/M, where s is routes.alphaShare (default 0.5) and M is fixed
// up front: top+1 with automatic routes (the top routes and "other", however many routes turn up),
// the listed routes + 1 with an explicit list. Each analyzer's tests are e-processes whose
// false-Fail probability over the whole rollout is at most its alpha (analysis/sequential), so by
// the union bound the rollout as a whole rolls back a canary that is no worse with probability at
// most (1-s)·alpha + M·s·alpha/M = alpha, however many routes there are and however often it looks.
// The price: each route needs about log(M/(s·alpha)) instead of log(1/alpha) nats of evidence (with
// alpha 0.01, s 0.5, M 11: 7.7 instead of 4.6), which a route whose 5xx rate jumps from 0.4% to
// 50% gathers in a few dozen requests.
//
// Automatic routes are chosen once: the top routes by requests of every cohort (stable included,
// which serves most traffic and has the same routes) once FreezeAfter requests were seen; until then
// requests are held and then replayed. A route chosen later would be one more test than the budget
// was split for.
type RouteJudge struct {
	spec       RoutesSpec
	ms         []routeMatcher
	cfg        sequential.Config // per route: Alpha is the route's share
	control    providers.Cohort
	slots      int
	frozen     bool
	pending    []providers.Request
	counts     map[string]int
	chosen     map[string]bool
	routes     map[string]*routeState
	order      []string // routes in the order they were first seen
	freezeAt   int
	maxPending int
	budget     float64 // the rollout's alpha, before the split
}

type routeState struct {
	a       *sequential.Analyzer
	verdict sequential.Verdict
	seenC   int64 // the route's canary and control requests (not routed by a rule)
	seenB   int64
}

// RouteFreezeAfter is how many requests (every cohort) choose the automatic top routes.
const RouteFreezeAfter = 2000

// NewRouteJudge builds the per-route analyzers from the spec and the service's analyzer config
// (its Alpha is the rollout's whole budget; see ServiceAlpha for the service's own share).
func NewRouteJudge(spec RoutesSpec, service sequential.Config, control providers.Cohort) (*RouteJudge, error) {
	spec = spec.withDefaults()
	j := &RouteJudge{spec: spec, control: control, counts: map[string]int{}, chosen: map[string]bool{},
		routes: map[string]*routeState{}, freezeAt: RouteFreezeAfter, maxPending: 1 << 16}
	for _, rt := range spec.List {
		m, err := compileRoute(rt)
		if err != nil {
			return nil, fmt.Errorf("analysis.routes: route %q: %w", rt.Name, err)
		}
		j.ms = append(j.ms, m)
	}
	if spec.Auto {
		j.slots = spec.Top + 1
	} else {
		j.slots = len(spec.List) + 1
		j.frozen = true
	}
	alpha := service.Alpha
	if alpha == 0 {
		alpha = sequential.DefaultConfig().Alpha
	}
	j.budget = alpha
	j.cfg = service
	j.cfg.Alpha = spec.AlphaShare * alpha / float64(j.slots)
	if _, err := sequential.New(j.cfg); err != nil {
		return nil, fmt.Errorf("analysis.routes: %w", err)
	}
	return j, nil
}

// ServiceAlpha is the service-level analyzer's share of the budget alpha when routes are judged.
func (s RoutesSpec) ServiceAlpha(alpha float64) float64 {
	return (1 - s.withDefaults().AlphaShare) * alpha
}

// RouteAlpha is each route analyzer's alpha.
func (j *RouteJudge) RouteAlpha() float64 { return j.cfg.Alpha }

// NewStep starts a new step for every route (Pass evidence is per step, as for the service).
func (j *RouteJudge) NewStep() {
	for _, r := range j.routes {
		r.a.NewStep()
		r.verdict = r.a.Verdict()
	}
}

// Observe takes the requests of one look (every cohort, as the request log returns them) and
// returns Fail with the failing route's name if any route fails.
func (j *RouteJudge) Observe(reqs []providers.Request, until time.Time) (sequential.Verdict, string, error) {
	if !j.frozen {
		for _, q := range reqs {
			j.counts[j.spec.routeKey(j.ms, q)]++
		}
		j.pending = append(j.pending, reqs...)
		if len(j.pending) < j.freezeAt && len(j.pending) < j.maxPending {
			return sequential.NeedMoreData, "", nil
		}
		for _, k := range topRoutes(j.counts, j.spec.Top) {
			j.chosen[k] = true
		}
		j.frozen = true
		reqs, j.pending = j.pending, nil
	}
	by := map[string][]providers.Request{}
	for _, q := range reqs {
		k := j.spec.routeKey(j.ms, q)
		if j.spec.Auto && !j.chosen[k] {
			k = OtherRoute
		}
		by[k] = append(by[k], q)
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	failed := ""
	for _, k := range keys {
		r, err := j.route(k)
		if err != nil {
			return sequential.NeedMoreData, "", err
		}
		b := batchOf(by[k], j.control)
		b.Until = until
		r.seenC += int64(len(b.Canary))
		r.seenB += int64(len(b.Baseline))
		r.verdict = r.a.Observe(b)
		if r.verdict == sequential.Fail && failed == "" {
			failed = k
		}
	}
	if failed != "" {
		return sequential.Fail, failed, nil
	}
	return sequential.NeedMoreData, "", nil
}

func (j *RouteJudge) route(k string) (*routeState, error) {
	if r, ok := j.routes[k]; ok {
		return r, nil
	}
	a, err := sequential.New(j.cfg)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", k, err)
	}
	r := &routeState{a: a}
	j.routes[k] = r
	j.order = append(j.order, k)
	return r, nil
}

// RouteResult is one route's row in reports.
type RouteResult struct {
	Route   string             `json:"route"`
	Verdict sequential.Verdict `json:"verdict"`
	// TooLittleTraffic: the route has fewer than routes.minRequests requests in the canary or the
	// control and has not failed; it is reported, never failed for lack of data.
	TooLittleTraffic bool    `json:"tooLittleTraffic,omitempty"`
	CanaryRequests   int64   `json:"canaryRequests"`
	ControlRequests  int64   `json:"controlRequests"`
	Alpha            float64 `json:"alpha"`
	Reason           string  `json:"reason"`
	// Decisions are the route's tests, as for the service.
	Decisions []sequential.Decision `json:"decisions,omitempty"`
}

// Results are the routes' rows, the worst first: failed, then undecided, then passed; by requests
// within each.
func (j *RouteJudge) Results() []RouteResult {
	out := make([]RouteResult, 0, len(j.routes))
	for _, k := range j.order {
		r := j.routes[k]
		rep := r.a.Report()
		res := RouteResult{Route: k, Verdict: rep.Verdict, CanaryRequests: r.seenC, ControlRequests: r.seenB,
			Alpha: j.cfg.Alpha, Decisions: rep.Decisions}
		min := int64(j.spec.MinRequests)
		switch {
		case rep.Verdict == sequential.Fail:
			res.Reason = routeFailReason(k, rep)
		case r.seenC < min || r.seenB < min:
			res.TooLittleTraffic = true
			res.Reason = fmt.Sprintf("route %s: too little traffic to judge (%d canary, %d control requests; %d each wanted)", k, r.seenC, r.seenB, min)
		default:
			res.Reason = "route " + k + ": " + rep.Reason
		}
		out = append(out, res)
	}
	rank := func(r RouteResult) int {
		switch {
		case r.Verdict == sequential.Fail:
			return 0
		case r.Verdict == sequential.NeedMoreData && !r.TooLittleTraffic:
			return 1
		case r.TooLittleTraffic:
			return 3
		}
		return 2
	}
	sort.SliceStable(out, func(a, b int) bool {
		if rank(out[a]) != rank(out[b]) {
			return rank(out[a]) < rank(out[b])
		}
		return out[a].CanaryRequests+out[a].ControlRequests > out[b].CanaryRequests+out[b].ControlRequests
	})
	return out
}

// routeFailReason names the route and what it showed: "route POST /checkout/pay: 5xx-rate 48% vs 0.4%".
func routeFailReason(route string, rep sequential.Report) string {
	var parts []string
	for _, d := range rep.Decisions {
		if d.Verdict != sequential.Fail {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.3g%s vs %.3g%s (%d vs %d requests)", d.Metric, d.CanaryValue, d.Unit, d.BaselineValue, d.Unit, d.Canary, d.Baseline))
	}
	return fmt.Sprintf("route %s: %s", route, strings.Join(parts, ", "))
}

// ServiceBudget is the rollout's whole false-rollback budget the routes were split from.
func (j *RouteJudge) ServiceBudget() float64 { return j.budget }

// FailReason is the sentence of a rollback by route: "fail: route POST /checkout/pay:
// 5xx-rate 48% vs 0.4% (…)".
func (j *RouteJudge) FailReason(route string) string {
	r, ok := j.routes[route]
	if !ok {
		return "fail: route " + route
	}
	return "fail: " + routeFailReason(route, r.a.Report()) +
		fmt.Sprintf(" (route alpha %.2g: %.2g of the rollout's %.2g split over %d routes)", j.cfg.Alpha, j.spec.AlphaShare, j.budget, j.slots)
}
