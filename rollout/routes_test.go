package rollout

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

func TestRouteKeys(t *testing.T) {
	t.Parallel()
	var ms []routeMatcher
	for _, rt := range []RouteSpec{
		{Name: "pay", Match: RouteMatchSpec{PathPrefix: "/checkout/pay"}},
		{Name: "checkout", Match: RouteMatchSpec{PathPrefix: "/checkout/"}},
		{Name: "search", Match: RouteMatchSpec{Regex: `^/search(/.*)?$`}},
		{Name: "kong-orders", Match: RouteMatchSpec{KongRoute: "orders-api"}},
	} {
		m, err := compileRoute(rt)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	for _, tc := range []struct {
		name     string
		req      providers.Request
		explicit string
	}{
		{"kong-log path", providers.Request{Route: "checkout-api", Path: "/checkout/pay/42"}, "pay"},
		{"proxy template", providers.Request{Route: "POST /checkout/pay"}, "pay"},
		{"prefix is segment-wise", providers.Request{Route: "GET /checkouts"}, OtherRoute},
		{"checkout root", providers.Request{Route: "GET /checkout"}, "checkout"},
		{"regex on the path without the query", providers.Request{Path: "/search?q=/x"}, "search"},
		{"kong route name", providers.Request{Route: "orders-api", Path: "/o/1"}, "kong-orders"},
		{"no route recorded", providers.Request{}, OtherRoute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := routeKey(ms, true, tc.req); got != tc.explicit {
				t.Errorf("explicit: %q, want %q", got, tc.explicit)
			}
			if got := routeKey(nil, false, tc.req); got != tc.req.Route {
				t.Errorf("auto: %q, want the source's route %q", got, tc.req.Route)
			}
		})
	}
}

func TestTopRoutes(t *testing.T) {
	t.Parallel()
	got := topRoutes(map[string]int{"a": 5, "b": 9, "c": 5, OtherRoute: 100, "": 50, "d": 1}, 3)
	if strings.Join(got, ",") != "b,a,c" {
		t.Fatalf("top routes %v, want b,a,c (by count, ties by name, never other or unnamed)", got)
	}
}

// kongLogLines: a Kong gateway with kong-log metrics, which name every request's route.
const kongLogLines = "gateway: {type: kong, kong: {admin: \"http://127.0.0.1:8001\", upstream: checkout}}\nmetrics: {type: kong-log}\n"

func specErrorFields(err error) []string {
	var fields []string
	var errs SpecErrors
	if errors.As(err, &errs) {
		for _, e := range errs {
			var se *SpecError
			if errors.As(e, &se) {
				fields = append(fields, se.Field)
			}
		}
	}
	var se *SpecError
	if len(fields) == 0 && errors.As(err, &se) {
		fields = append(fields, se.Field)
	}
	return fields
}

func TestRoutesSpecParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		want       RoutesSpec
		field      string // a SpecError field, or "" for success
	}{
		{"left out", "", RoutesSpec{Segments: 2, Top: 10, MinRequests: 50, AlphaShare: DefaultRouteAlphaShare}, ""},
		{"auto", "analysis: {routes: auto}\n", RoutesSpec{Mode: RoutesAuto, Segments: 2, Top: 10, MinRequests: 50, AlphaShare: DefaultRouteAlphaShare}, ""},
		{"off", "analysis: {routes: off}\n", RoutesSpec{Mode: RoutesOff, Segments: 2, Top: 10, MinRequests: 50, AlphaShare: DefaultRouteAlphaShare}, ""},
		{"auto settings", "analysis: {routes: {segments: 3, top: 20, minRequests: 100, alphaShare: 0.4}}\n",
			RoutesSpec{Mode: RoutesAuto, Segments: 3, Top: 20, MinRequests: 100, AlphaShare: 0.4}, ""},
		{"list", "analysis:\n  routes:\n    - {name: pay, match: {pathPrefix: /checkout/pay}}\n    - {name: k, match: {kongRoute: orders}}\n",
			RoutesSpec{Mode: RoutesList, Segments: 2, Top: 10, MinRequests: 50, AlphaShare: DefaultRouteAlphaShare,
				List: []RouteSpec{{Name: "pay", Match: RouteMatchSpec{PathPrefix: "/checkout/pay"}}, {Name: "k", Match: RouteMatchSpec{KongRoute: "orders"}}}}, ""},
		{"two sources", "analysis:\n  routes:\n    - {name: pay, match: {pathPrefix: /p, regex: x}}\n", RoutesSpec{}, "analysis.routes[0].match"},
		{"no source", "analysis:\n  routes:\n    - {name: pay}\n", RoutesSpec{}, "analysis.routes[0].match"},
		{"bad regex", "analysis:\n  routes:\n    - {name: pay, match: {regex: '('}}\n", RoutesSpec{}, "analysis.routes[0].match"},
		{"relative prefix", "analysis:\n  routes:\n    - {name: pay, match: {pathPrefix: checkout}}\n", RoutesSpec{}, "analysis.routes[0].match"},
		{"other is reserved", "analysis:\n  routes:\n    - {name: other, match: {pathPrefix: /x}}\n", RoutesSpec{}, "analysis.routes[0].name"},
		{"duplicate", "analysis:\n  routes:\n    - {name: a, match: {pathPrefix: /x}}\n    - {name: a, match: {pathPrefix: /y}}\n", RoutesSpec{}, "analysis.routes[1].name"},
		{"top too large", "analysis: {routes: {top: 500}}\n", RoutesSpec{}, "analysis.routes.top"},
		{"segments too many", "analysis: {routes: {segments: 9}}\n", RoutesSpec{}, "analysis.routes.segments"},
		{"alpha share", "analysis: {routes: {alphaShare: 1}}\n", RoutesSpec{}, "analysis.routes.alphaShare"},
		{"kayenta mode", "analysis: {mode: kayenta, routes: auto}\n", RoutesSpec{}, "analysis.routes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSpec(strings.NewReader(minimalSpec + kongLogLines + tc.yaml))
			if tc.field != "" {
				if fields := specErrorFields(err); !strings.Contains(" "+strings.Join(fields, " ")+" ", " "+tc.field+" ") {
					t.Fatalf("error %v (fields %v), want one for %s", err, fields, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Analysis.Routes; fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("parsed %+v, want %+v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"routes: all", "analysis: {routes: all}\n", `"all" is not valid; write auto, off`},
		{"misspelt field", "analysis: {routes: {segmnts: 2}}\n", "field segmnts not found in analysis.routes; use segments"},
		{"misspelt match field", "analysis:\n  routes:\n    - {name: pay, match: {prefix: /p}}\n", "field prefix not found in a route's match; use pathPrefix"},
		{"misspelt route field", "analysis:\n  routes: {list: [{nme: pay}]}\n", "field nme not found in a route; use name, match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseSpec(strings.NewReader(minimalSpec + kongLogLines + tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "analysis.routes") {
				t.Fatalf("error %v, want one naming analysis.routes saying %q", err, tc.want)
			}
		})
	}
}

// routeTraffic generates a look's requests: rate req/s in total, split by cohort share, over the
// routes with their traffic shares; errRate gives each (route, cohort) its 5xx probability.
type routeTraffic struct {
	rng            *rand.Rand
	rate           float64
	canary, contrl float64 // shares of traffic
	routes         []string
	shares         []float64
	errRate        func(route string, c providers.Cohort) float64
}

func (g *routeTraffic) look(from time.Time, d time.Duration) []providers.Request {
	n := int(g.rate * d.Seconds())
	out := make([]providers.Request, 0, n)
	for i := range n {
		at := from.Add(time.Duration(float64(d) * (float64(i) + g.rng.Float64()) / float64(n)))
		u := g.rng.Float64()
		c := providers.Stable
		switch {
		case u < g.canary:
			c = providers.Canary
		case u < g.canary+g.contrl:
			c = providers.Baseline
		}
		v, route := g.rng.Float64(), g.routes[len(g.routes)-1]
		for k, s := range g.shares {
			if v < s {
				route = g.routes[k]
				break
			}
			v -= s
		}
		status := 200
		if g.rng.Float64() < g.errRate(route, c) {
			status = 503
		}
		out = append(out, providers.Request{Time: at, Cohort: c, Status: status, Route: route,
			Instance: fmt.Sprintf("%s-%d", c, g.rng.IntN(2)), Latency: time.Duration(20+g.rng.ExpFloat64()*30) * time.Millisecond})
	}
	return out
}

// TestRouteJudgeCatchesOneBrokenRoute: a canary answering 50% 5xx on one route with 2% of the
// traffic (0.5% 5xx everywhere else), 200 req/s, 10% canary and 10% baseline: 0.4 canary requests a
// second on the route. Its own analyzer fails it and the row names it with the numbers. Seeded.
func TestRouteJudgeCatchesOneBrokenRoute(t *testing.T) {
	t.Parallel()
	routes := []string{"POST /checkout/pay", "GET /products/{id}", "GET /cart", "GET /search", "GET /users/{id}"}
	shares := []float64{0.02, 0.5, 0.2, 0.18, 0.10}
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			g := &routeTraffic{rng: rand.New(rand.NewPCG(seed, 18)), rate: 200, canary: 0.1, contrl: 0.1, routes: routes, shares: shares,
				errRate: func(route string, c providers.Cohort) float64 {
					if c == providers.Canary && route == "POST /checkout/pay" {
						return 0.5
					}
					return 0.005
				}}
			j, err := NewRouteJudge(RoutesSpec{Mode: RoutesAuto}, sequential.DefaultConfig(), providers.Baseline)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			failed := ""
			for look := 1; look <= 240 && failed == ""; look++ { // 20 minutes at most
				from := start.Add(time.Duration(look-1) * 5 * time.Second)
				if failed, err = j.Observe(g.look(from, 5*time.Second), from.Add(5*time.Second)); err != nil {
					t.Fatal(err)
				}
			}
			if failed != "POST /checkout/pay" {
				t.Fatalf("failed route %q, want POST /checkout/pay within 20 minutes", failed)
			}
			res := j.Results()
			if res[0].Route != "POST /checkout/pay" || res[0].Verdict != VerdictFail || !strings.Contains(res[0].Reason, "route POST /checkout/pay: the canary is worse on 5xx-") {
				t.Fatalf("worst route row %+v", res[0])
			}
			for _, r := range res[1:] {
				if r.Verdict == VerdictFail {
					t.Errorf("route %s failed too: %s", r.Route, r.Reason)
				}
			}
			if fr := j.FailReason(failed); !strings.HasPrefix(fr, "fail: route POST /checkout/pay: ") || !strings.Contains(fr, "split over 11 routes") {
				t.Errorf("fail reason %q", fr)
			}
		})
	}
}

// TestRouteJudgeAA: canary and baseline alike on 20 routes; the split over top+1 routes is as
// written down, and no route fails. A few seeded rollouts only (a unit test): the 1,000-rollout
// false-rollback rate belongs to the simulator (aa-20-routes).
func TestRouteJudgeAA(t *testing.T) {
	t.Parallel()
	var routes []string
	var shares []float64
	for i := range 20 {
		routes = append(routes, fmt.Sprintf("GET /r%02d", i))
		shares = append(shares, 1.0/20)
	}
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			g := &routeTraffic{rng: rand.New(rand.NewPCG(seed, 20)), rate: 200, canary: 0.1, contrl: 0.1, routes: routes, shares: shares,
				errRate: func(string, providers.Cohort) float64 { return 0.01 }}
			j, err := NewRouteJudge(RoutesSpec{Mode: RoutesAuto, Top: 20}, sequential.DefaultConfig(), providers.Baseline)
			if err != nil {
				t.Fatal(err)
			}
			if want := DefaultRouteAlphaShare * 0.01 / 21; j.RouteAlpha() != want {
				t.Fatalf("route alpha %v, want %v (alphaShare of the budget over top+1 routes)", j.RouteAlpha(), want)
			}
			start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			for look := 1; look <= 72; look++ { // 6 minutes
				from := start.Add(time.Duration(look-1) * 5 * time.Second)
				failed, err := j.Observe(g.look(from, 5*time.Second), from.Add(5*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				if failed != "" {
					t.Fatalf("look %d: A/A route %s failed", look, failed)
				}
			}
			if res := j.Results(); len(res) != 20 { // 20 routes chosen, nothing left for other
				t.Fatalf("%d route rows, want 20", len(res))
			}
		})
	}
}

// TestRouteJudgeTooLittleTraffic: a route with a handful of requests is reported as such, never
// failed, even when every canary request on it failed.
func TestRouteJudgeTooLittleTraffic(t *testing.T) {
	t.Parallel()
	j, err := NewRouteJudge(RoutesSpec{Mode: RoutesList, List: []RouteSpec{{Name: "rare", Match: RouteMatchSpec{PathPrefix: "/rare"}}}},
		sequential.DefaultConfig(), providers.Baseline)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var reqs []providers.Request
	for i := range 3 {
		at := start.Add(time.Duration(i) * time.Second)
		reqs = append(reqs, providers.Request{Time: at, Cohort: providers.Canary, Status: 500, Path: "/rare/1", Latency: 10 * time.Millisecond},
			providers.Request{Time: at, Cohort: providers.Baseline, Status: 200, Path: "/rare/1", Latency: 10 * time.Millisecond})
	}
	if failed, err := j.Observe(reqs, start.Add(10*time.Second)); err != nil || failed != "" {
		t.Fatalf("observe: %q %v", failed, err)
	}
	res := j.Results()
	if len(res) != 1 || res[0].Route != "rare" || !res[0].TooLittleTraffic || res[0].Verdict == VerdictFail ||
		!strings.Contains(res[0].Reason, "too little traffic") {
		t.Fatalf("rows %+v", res)
	}
}

// FuzzRoutesSpec: any analysis.routes value parses without panicking; an accepted one validates
// and gives a route judge with the alpha split over the routes it names.
func FuzzRoutesSpec(f *testing.F) {
	for _, s := range []string{"auto", "off", "{segments: 3, top: 5}", "[{name: a, match: {pathPrefix: /a}}]",
		"{list: [{name: a, match: {regex: '^/a'}}, {name: b, match: {kongRoute: b}}]}", "[{name: a}]", "{top: -1}", "[1, 2]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, routes string) {
		if strings.ContainsAny(routes, "\n\r") {
			return
		}
		s, err := ParseSpec(strings.NewReader(minimalSpec + kongLogLines + "analysis: {routes: " + routes + "}\n"))
		if err != nil {
			if !strings.Contains(err.Error(), ": ") {
				t.Fatalf("error without a field: %q", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted spec does not validate: %v", err)
		}
		if s.Analysis.Routes.Mode == RoutesOff || s.Analysis.Routes.Mode == "" {
			return
		}
		j, err := NewRouteJudge(s.Analysis.Routes, sequential.DefaultConfig(), providers.Baseline)
		if err != nil {
			t.Fatalf("accepted routes %q give no judge: %v", routes, err)
		}
		if a := j.RouteAlpha(); !(a > 0 && a < 0.01) {
			t.Fatalf("route alpha %v", a)
		}
	})
}
