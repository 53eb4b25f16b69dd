package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

// RouteJudge judges every route of the service on its own, with the same sequential tests as the
// service (analysis/sequential), on the requests of that route only.
//
// Multiple testing. The rollout's false-rollback budget alpha (analysis.sequential.alpha) is split
// before any evidence is seen (Bonferroni): the service-level analyzer keeps (1-s)·alpha and each of
// the M route analyzers gets s·alpha/M, where s is routes.alphaShare (default 0.2) and M is fixed
// up front: top+1 for automatic routes (the top routes and "other", however many routes turn up),
// the listed routes + 1 for an explicit list. Each analyzer's tests are e-processes whose chance of
// a false Fail over the whole rollout is at most its alpha (analysis/sequential), so by the union
// bound a canary no worse than its control anywhere is rolled back with probability at most
// (1-s)·alpha + M·s·alpha/M = alpha, however many routes there are and however often the engine
// looks. A route's fast 5xx test has its own alternatives, alpha share, baseline condition and slot
// width (routes_fast.go: a route's slots hold few requests). The price: each route's tests need
// log(M/s) more nats of evidence than the service's would
// at the whole alpha (alpha 0.01, s 0.2, M 11: +4.0 nats, e.g. the fast 5xx test 9.5 instead of
// 5.5), and the service's tests log(1/(1-s)) more (+0.22 nats).
//
// Automatic routes are chosen once: the top routes by requests of every cohort (stable included:
// it serves most of the traffic, with the same routes) once RouteFreezeRequests requests were seen or
// RouteFreezeAfter passed since the first; until then requests are held and then replayed. The
// choice depends on how traffic is spread over routes, never on the requests' statuses or
// latencies. A route chosen later would be one more test than the budget was split for.
type RouteJudge struct {
	spec     RoutesSpec
	ms       []routeMatcher
	explicit bool
	cfg      sequential.Config // per route: Alpha is the route's share
	budget   float64           // the rollout's alpha, before the split
	slots    int               // M
	control  providers.Cohort

	frozen     bool
	firstAt    time.Time // the first held request's time
	pending    []providers.Request
	counts     map[string]int
	chosen     map[string]bool
	routes     map[string]*routeState
	order      []string // routes in the order they were first seen
	freezeAt   int
	maxPending int
}

type routeState struct {
	a              *sequential.Analyzer
	canary, contrl int64 // the route's canary and control requests (rule-routed ones left out)
}

// RouteFreezeRequests and RouteFreezeAfter: automatic routes are chosen after this many requests
// (every cohort) or this long after the first, whichever comes first.
const (
	RouteFreezeRequests = 2000
	RouteFreezeAfter    = 30 * time.Second
)

// NewRouteJudge builds the per-route analyzers from the spec and the service's analyzer config,
// whose Alpha is the rollout's whole budget (the service keeps ServiceAlpha of it).
func NewRouteJudge(spec RoutesSpec, service sequential.Config, control providers.Cohort) (*RouteJudge, error) {
	spec.setDefaults()
	j := &RouteJudge{spec: spec, control: control, counts: map[string]int{}, chosen: map[string]bool{},
		routes: map[string]*routeState{}, freezeAt: RouteFreezeRequests, maxPending: 1 << 16,
		explicit: spec.Mode == RoutesList}
	for _, rt := range spec.List {
		m, err := compileRoute(rt)
		if err != nil {
			return nil, fmt.Errorf("analysis.routes: route %q: %w", rt.Name, err)
		}
		j.ms = append(j.ms, m)
	}
	if j.explicit {
		j.slots = len(spec.List) + 1
		j.frozen = true
	} else {
		j.slots = spec.Top + 1
	}
	j.budget = service.Alpha
	if j.budget == 0 {
		j.budget = sequential.DefaultConfig().Alpha
	}
	j.cfg = service
	j.cfg.Alpha = spec.AlphaShare * j.budget / float64(j.slots)
	routeFastConfig(&j.cfg)
	if _, err := sequential.New(j.cfg); err != nil {
		return nil, fmt.Errorf("analysis.routes: %w", err)
	}
	return j, nil
}

// ServiceAlpha is the service-level analyzer's share of the budget alpha when routes are judged.
func (r RoutesSpec) ServiceAlpha(alpha float64) float64 {
	r.setDefaults()
	return (1 - r.AlphaShare) * alpha
}

// RouteAlpha is each route analyzer's alpha.
func (j *RouteJudge) RouteAlpha() float64 { return j.cfg.Alpha }

// NewStep starts a new step for every route (Pass evidence is per step, as for the service).
func (j *RouteJudge) NewStep() {
	for _, r := range j.routes {
		r.a.NewStep()
	}
}

// Observe takes the requests of one look (every cohort, in the request log's order) and returns
// the name of a route that fails, "" while none does.
func (j *RouteJudge) Observe(reqs []providers.Request, until time.Time) (string, error) {
	if !j.frozen {
		for _, q := range reqs {
			j.counts[routeKey(j.ms, j.explicit, q)]++
		}
		if len(j.pending) == 0 && len(reqs) > 0 {
			j.firstAt = reqs[0].Time
		}
		j.pending = append(j.pending, reqs...)
		if len(j.pending) == 0 || len(j.pending) < j.freezeAt && len(j.pending) < j.maxPending && until.Sub(j.firstAt) < RouteFreezeAfter {
			return "", nil
		}
		for _, k := range topRoutes(j.counts, j.spec.Top) {
			j.chosen[k] = true
		}
		j.frozen, j.counts = true, nil
		reqs, j.pending = j.pending, nil
	}
	by := map[string][]providers.Request{}
	for _, q := range reqs {
		k := routeKey(j.ms, j.explicit, q)
		if !j.explicit && !j.chosen[k] {
			k = OtherRoute
		}
		by[k] = append(by[k], q)
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	failed := ""
	for _, k := range keys {
		r, err := j.route(k)
		if err != nil {
			return "", err
		}
		b := batchOf(by[k], j.control)
		b.Until = until
		r.canary += int64(len(b.Canary))
		r.contrl += int64(len(b.Baseline))
		if r.a.Observe(b) == sequential.Fail && failed == "" {
			failed = k
		}
	}
	// a route that failed at an earlier look stays failed (Fail evidence runs over the rollout)
	if failed == "" {
		for _, k := range j.order {
			if j.routes[k].a.Verdict() == sequential.Fail {
				return k, nil
			}
		}
	}
	return failed, nil
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

// RouteResult is one route's row in the interval (state.json, the JSON report, JUnit, the TUI).
type RouteResult struct {
	Route   string  `json:"route"`
	Verdict Verdict `json:"verdict"` // fail, pass or need-more-data
	// TooLittleTraffic: the route has fewer than routes.minRequests canary or control requests and
	// has not failed; it is reported as such, never failed for lack of data.
	TooLittleTraffic bool  `json:"tooLittleTraffic,omitempty"`
	CanaryRequests   int64 `json:"canaryRequests"`
	ControlRequests  int64 `json:"controlRequests"`
	// CanaryErrorPercent and ControlErrorPercent: the route's 5xx rates over its paired requests.
	CanaryErrorPercent  Number  `json:"canaryErrorPercent"`
	ControlErrorPercent Number  `json:"controlErrorPercent"`
	Alpha               float64 `json:"alpha"`
	Reason              string  `json:"reason"`
	// Decisions are the route's tests, as for the service.
	Decisions []sequential.Decision `json:"decisions,omitempty"`
}

// Results are the routes' rows, the worst first: failed, then undecided, then passed, then those
// with too little traffic; by requests within each.
func (j *RouteJudge) Results() []RouteResult {
	out := make([]RouteResult, 0, len(j.routes))
	for _, k := range j.order {
		r := j.routes[k]
		rep := r.a.Report()
		res := RouteResult{Route: k, Verdict: verdictOf(rep.Verdict), CanaryRequests: r.canary, ControlRequests: r.contrl,
			Alpha: j.cfg.Alpha, Decisions: rep.Decisions, CanaryErrorPercent: Number(nan()), ControlErrorPercent: Number(nan())}
		for _, d := range rep.Decisions {
			if d.Metric == sequential.MetricErrors {
				res.CanaryErrorPercent, res.ControlErrorPercent = Number(d.CanaryValue), Number(d.BaselineValue)
			}
		}
		min := int64(j.spec.MinRequests)
		switch {
		case rep.Verdict == sequential.Fail:
			res.Reason = routeFailReason(k, rep)
		case r.canary < min || r.contrl < min:
			res.TooLittleTraffic = true
			res.Reason = fmt.Sprintf("route %s: too little traffic to judge (%d canary, %d control requests; %d each wanted)", k, r.canary, r.contrl, min)
		default:
			res.Reason = "route " + k + ": " + rep.Reason
		}
		out = append(out, res)
	}
	slices.SortStableFunc(out, func(a, b RouteResult) int {
		if ra, rb := routeRank(a), routeRank(b); ra != rb {
			return ra - rb
		}
		return int((b.CanaryRequests + b.ControlRequests) - (a.CanaryRequests + a.ControlRequests))
	})
	return out
}

// routeRank orders route rows, the worst first.
func routeRank(r RouteResult) int {
	switch {
	case r.Verdict == VerdictFail:
		return 0
	case r.TooLittleTraffic:
		return 3
	case r.Verdict == VerdictNeedMoreData:
		return 1
	}
	return 2
}

// routeFailReason names the route and what its failed tests showed, in the service's words:
// "route POST /checkout/pay: the canary is worse on 5xx-fast (48% vs 0.4%, 40 canary vs 3980
// control requests)".
func routeFailReason(route string, rep sequential.Report) string {
	var parts []string
	for _, d := range rep.Decisions {
		if d.Verdict != sequential.Fail {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s (%.3g%s vs %.3g%s, %d canary vs %d control requests)", d.Metric, d.CanaryValue, d.Unit, d.BaselineValue, d.Unit, d.Canary, d.Baseline))
	}
	return fmt.Sprintf("route %s: the canary is worse on %s", route, strings.Join(parts, " and "))
}

// FailReason is the sentence of a rollback by a route, with the alpha split it was judged at.
func (j *RouteJudge) FailReason(route string) string {
	r, ok := j.routes[route]
	if !ok {
		return "fail: route " + route
	}
	return "fail: " + routeFailReason(route, r.a.Report()) +
		fmt.Sprintf(" (route alpha %.2g: %.2g of the rollout's %.2g split over %d routes)", j.cfg.Alpha, j.spec.AlphaShare, j.budget, j.slots)
}
