package rollout

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

func TestPathTemplate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		n    int
		want string
	}{
		{"/checkout/pay", 2, "/checkout/pay"},
		{"/checkout/pay?card=1", 2, "/checkout/pay"},
		{"/users/123/orders/9", 2, "/users/{id}"},
		{"/users/123/orders/9", 4, "/users/{id}/orders/{id}"},
		{"/orders/3f2b9c4e-1a2b-4c3d-9e8f-0123456789ab", 2, "/orders/{id}"},
		{"/blobs/0123456789abcdef0123", 2, "/blobs/{id}"},
		{"/blobs/deadbeefdeadbeefdead", 2, "/blobs/deadbeefdeadbeefdead"}, // hex letters only: a word, not an id
		{"/api/v2/items", 2, "/api/v2"},
		{"//double//slash/", 2, "/double/slash"},
		{"/", 2, "/"},
		{"", 2, "/"},
		{"/a/b/c", 1, "/a"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := PathTemplate(tc.path, tc.n); got != tc.want {
				t.Fatalf("PathTemplate(%q, %d) = %q, want %q", tc.path, tc.n, got, tc.want)
			}
		})
	}
}

func TestRouteKeys(t *testing.T) {
	t.Parallel()
	list := RoutesSpec{List: []RouteSpec{
		{Name: "pay", Match: RouteMatchSpec{PathPrefix: "/checkout/pay", Method: "post"}},
		{Name: "checkout", Match: RouteMatchSpec{PathPrefix: "/checkout/"}},
		{Name: "search", Match: RouteMatchSpec{Regex: `^/search(/.*)?$`}},
		{Name: "kong-orders", Match: RouteMatchSpec{KongRoute: "orders-api"}},
	}}
	var ms []routeMatcher
	for _, rt := range list.List {
		m, err := compileRoute(rt)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	auto := RoutesSpec{Auto: true}.withDefaults()
	for _, tc := range []struct {
		name     string
		req      providers.Request
		explicit string
		auto     string
	}{
		{"post pay", providers.Request{Method: "POST", Path: "/checkout/pay/42"}, "pay", "POST /checkout/pay"},
		{"get pay is checkout", providers.Request{Method: "GET", Path: "/checkout/pay"}, "checkout", "GET /checkout/pay"},
		{"prefix is segment-wise", providers.Request{Method: "GET", Path: "/checkouts"}, OtherRoute, "GET /checkouts"},
		{"checkout root", providers.Request{Method: "GET", Path: "/checkout"}, "checkout", "GET /checkout"},
		{"regex on the path without the query", providers.Request{Method: "GET", Path: "/search?q=/x"}, "search", "GET /search"},
		{"kong route name", providers.Request{Method: "GET", Path: "/o/1", KongRoute: "orders-api"}, "kong-orders", "orders-api"},
		{"no method recorded", providers.Request{Path: "/users/7"}, OtherRoute, "/users/{id}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := list.routeKey(ms, tc.req); got != tc.explicit {
				t.Errorf("explicit: %q, want %q", got, tc.explicit)
			}
			if got := auto.routeKey(nil, tc.req); got != tc.auto {
				t.Errorf("auto: %q, want %q", got, tc.auto)
			}
		})
	}
}

func TestTopRoutes(t *testing.T) {
	t.Parallel()
	got := topRoutes(map[string]int{"a": 5, "b": 9, "c": 5, OtherRoute: 100, "d": 1}, 3)
	if strings.Join(got, ",") != "b,a,c" {
		t.Fatalf("top routes %v, want b,a,c (by count, ties by name, never other)", got)
	}
}

// kongLogLines: a Kong gateway with kong-log metrics, where routes can be judged.
const kongLogLines = "gateway: {type: kong, kong: {admin: \"http://127.0.0.1:8001\", upstream: checkout}}\nmetrics: {type: kong-log}\n"

func TestRoutesSpecParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		want       RoutesSpec
		field      string // a SpecError field, or "" for success
	}{
		{"auto", "analysis: {routes: auto}\n", RoutesSpec{Auto: true}, ""},
		{"auto settings", "analysis: {routes: {segments: 3, top: 20, minRequests: 100, alphaShare: 0.4}}\n",
			RoutesSpec{Auto: true, Segments: 3, Top: 20, MinRequests: 100, AlphaShare: 0.4}, ""},
		{"list", "analysis:\n  routes:\n    - {name: pay, match: {pathPrefix: /checkout/pay, method: POST}}\n    - {name: k, match: {kongRoute: orders}}\n",
			RoutesSpec{List: []RouteSpec{{Name: "pay", Match: RouteMatchSpec{PathPrefix: "/checkout/pay", Method: "POST"}}, {Name: "k", Match: RouteMatchSpec{KongRoute: "orders"}}}}, ""},
		{"two sources", "analysis:\n  routes:\n    - {name: pay, match: {pathPrefix: /p, regex: x}}\n", RoutesSpec{}, "analysis.routes[0].match"},
		{"bad regex", "analysis:\n  routes:\n    - {name: pay, match: {regex: '('}}\n", RoutesSpec{}, "analysis.routes[0].match"},
		{"relative prefix", "analysis:\n  routes:\n    - {name: pay, match: {pathPrefix: checkout}}\n", RoutesSpec{}, "analysis.routes[0].match"},
		{"other is reserved", "analysis:\n  routes:\n    - {name: other, match: {pathPrefix: /x}}\n", RoutesSpec{}, "analysis.routes[0].name"},
		{"duplicate", "analysis:\n  routes:\n    - {name: a, match: {pathPrefix: /x}}\n    - {name: a, match: {pathPrefix: /y}}\n", RoutesSpec{}, "analysis.routes[1].name"},
		{"top too large", "analysis: {routes: {top: 500}}\n", RoutesSpec{}, "analysis.routes.top"},
		{"alpha share", "analysis: {routes: {alphaShare: 1}}\n", RoutesSpec{}, "analysis.routes.alphaShare"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSpec(strings.NewReader(minimalSpec + kongLogLines + tc.yaml))
			if tc.field != "" {
				var se *SpecError
				found := false
				for _, e := range flatten(err) {
					if errors.As(e, &se) && se.Field == tc.field {
						found = true
					}
				}
				if !found {
					t.Fatalf("error %v, want one for %s", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := s.Analysis.Routes
			if got.Auto != tc.want.Auto || got.Segments != tc.want.Segments || got.Top != tc.want.Top ||
				got.MinRequests != tc.want.MinRequests || got.AlphaShare != tc.want.AlphaShare || len(got.List) != len(tc.want.List) {
				t.Fatalf("parsed %+v, want %+v", got, tc.want)
			}
			for i := range got.List {
				if got.List[i] != tc.want.List[i] {
					t.Fatalf("route %d: %+v, want %+v", i, got.List[i], tc.want.List[i])
				}
			}
		})
	}
	for _, tc := range []struct{ name, yaml, field string }{
		{"routes: all", kongLogLines + "analysis: {routes: all}\n", ""},
		{"misspelt field", kongLogLines + "analysis: {routes: {segmnts: 2}}\n", ""},
		{"builtin metrics record no paths", gatewayLine + "analysis: {routes: auto}\n", "analysis.routes"},
		{"kayenta mode", kongLogLines + "analysis: {mode: kayenta, routes: auto}\n", "analysis.routes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec(strings.NewReader(minimalSpec + tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.field == "" {
				return
			}
			var se *SpecError
			for _, e := range flatten(err) {
				if errors.As(e, &se) && se.Field == tc.field {
					return
				}
			}
			t.Fatalf("error %v, want one for %s", err, tc.field)
		})
	}
}

// routeTraffic generates a look's requests: rate req/s in total, split by cohort share, over the
// routes with their traffic shares; err gives each (route, cohort) its 5xx probability.
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
		method, path, _ := strings.Cut(route, " ")
		out = append(out, providers.Request{Time: at, Cohort: c, Status: status, Method: method, Path: path + "/7",
			Latency: time.Duration(20+g.rng.ExpFloat64()*30) * time.Millisecond})
	}
	return out
}

// TestRouteJudgeCatchesOneBrokenRoute: a canary answering 50% 5xx on one route with 2% of the
// traffic (the rest 0.4% 5xx everywhere), 200 req/s, 10% canary and 10% baseline: the route gets
// 0.4 canary requests a second. Its own analyzer fails it and names it with the numbers; the
// service-level analyzer, given the rest of the budget, is run beside it for the log (measured, not
// asserted: with five routes the broken one lifts the service's 5xx rate from 0.4% to 1.4%, which the
// service-level tests see too). Seeded: the same numbers on every run.
func TestRouteJudgeCatchesOneBrokenRoute(t *testing.T) {
	t.Parallel()
	routes := []string{"POST /checkout/pay", "GET /products", "GET /cart", "GET /search", "GET /users"}
	shares := []float64{0.02, 0.5, 0.2, 0.18, 0.10}
	spec := RoutesSpec{Auto: true}
	failAfter := map[string]time.Duration{}
	for seed := range uint64(5) {
		g := &routeTraffic{rng: rand.New(rand.NewPCG(seed, 18)), rate: 200, canary: 0.1, contrl: 0.1, routes: routes, shares: shares,
			errRate: func(route string, c providers.Cohort) float64 {
				if c == providers.Canary && route == "POST /checkout/pay" {
					return 0.5
				}
				return 0.004
			}}
		base := sequential.DefaultConfig()
		j, err := NewRouteJudge(spec, base, providers.Baseline)
		if err != nil {
			t.Fatal(err)
		}
		svcCfg := base
		svcCfg.Alpha = spec.ServiceAlpha(base.Alpha)
		svc, err := sequential.New(svcCfg)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		var routeAt, svcAt time.Duration
		var name string
		for look := 1; look <= 120 && (routeAt == 0 || svcAt == 0); look++ {
			from := start.Add(time.Duration(look-1) * 5 * time.Second)
			reqs := g.look(from, 5*time.Second)
			until := from.Add(5 * time.Second)
			if routeAt == 0 {
				v, route, err := j.Observe(reqs, until)
				if err != nil {
					t.Fatal(err)
				}
				if v == sequential.Fail {
					routeAt, name = until.Sub(start), route
				}
			}
			b := batchOf(reqs, providers.Baseline)
			b.Until = until
			if svcAt == 0 && svc.Observe(b) == sequential.Fail {
				svcAt = until.Sub(start)
			}
		}
		if routeAt == 0 || name != "POST /checkout/pay" {
			t.Fatalf("seed %d: the broken route was not failed in 10 minutes (failed %q)", seed, name)
		}
		res := j.Results()
		if res[0].Route != "POST /checkout/pay" || res[0].Verdict != sequential.Fail || !strings.Contains(res[0].Reason, "route POST /checkout/pay: 5xx") {
			t.Fatalf("seed %d: worst route row %+v", seed, res[0])
		}
		t.Logf("seed %d: route-level fail after %s (%s); service-level after %s (0: not within 10 min)", seed, routeAt, res[0].Reason, svcAt)
		failAfter["route"] = max(failAfter["route"], routeAt)
	}
	if failAfter["route"] > 5*time.Minute {
		t.Errorf("slowest route-level fail %s; want within 5 minutes at 0.4 canary requests/s on the route", failAfter["route"])
	}
}

// TestRouteJudgeAA: canary and baseline alike on 20 routes; no route may fail. A few seeded
// rollouts only (a unit test): the 1,000-rollout false-rollback rate belongs to the simulator.
func TestRouteJudgeAA(t *testing.T) {
	t.Parallel()
	var routes []string
	var shares []float64
	for i := range 20 {
		routes = append(routes, "GET /r"+string(rune('a'+i)))
		shares = append(shares, 1.0/20)
	}
	for seed := range uint64(4) {
		g := &routeTraffic{rng: rand.New(rand.NewPCG(seed, 20)), rate: 200, canary: 0.1, contrl: 0.1, routes: routes, shares: shares,
			errRate: func(string, providers.Cohort) float64 { return 0.01 }}
		j, err := NewRouteJudge(RoutesSpec{Auto: true, Top: 20}, sequential.DefaultConfig(), providers.Baseline)
		if err != nil {
			t.Fatal(err)
		}
		if want := 0.5 * 0.01 / 21; j.RouteAlpha() != want {
			t.Fatalf("route alpha %v, want %v (half the budget over top+1 routes)", j.RouteAlpha(), want)
		}
		start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		for look := 1; look <= 72; look++ { // 6 minutes
			from := start.Add(time.Duration(look-1) * 5 * time.Second)
			v, route, err := j.Observe(g.look(from, 5*time.Second), from.Add(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if v == sequential.Fail {
				t.Fatalf("seed %d look %d: A/A route %s failed", seed, look, route)
			}
		}
		res := j.Results()
		if len(res) != 20 { // 20 routes chosen, nothing left for other
			t.Fatalf("seed %d: %d route rows, want 20", seed, len(res))
		}
	}
}

// TestRouteJudgeTooLittleTraffic: a route with a handful of requests is reported as such, never failed.
func TestRouteJudgeTooLittleTraffic(t *testing.T) {
	t.Parallel()
	j, err := NewRouteJudge(RoutesSpec{List: []RouteSpec{{Name: "rare", Match: RouteMatchSpec{PathPrefix: "/rare"}}}},
		sequential.DefaultConfig(), providers.Baseline)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var reqs []providers.Request
	for i := range 6 {
		at := start.Add(time.Duration(i) * time.Second)
		reqs = append(reqs, providers.Request{Time: at, Cohort: providers.Canary, Status: 200, Path: "/rare/1", Latency: 10 * time.Millisecond},
			providers.Request{Time: at, Cohort: providers.Baseline, Status: 200, Path: "/rare/1", Latency: 10 * time.Millisecond})
	}
	if v, _, err := j.Observe(reqs, start.Add(10*time.Second)); err != nil || v == sequential.Fail {
		t.Fatalf("observe: %v %v", v, err)
	}
	res := j.Results()
	if len(res) != 1 || res[0].Route != "rare" || !res[0].TooLittleTraffic || res[0].Verdict == sequential.Fail ||
		!strings.Contains(res[0].Reason, "too little traffic") {
		t.Fatalf("rows %+v", res)
	}
}
