package rollout

import (
	"context"
	"encoding/xml"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
)

// routeLog names synthLog's requests' routes: 2% go to POST /checkout/pay, where the canary
// answers 50% 5xx; the rest spread over four GET routes with synthLog's background errors. With
// unnamed, it records no route (a source without routes).
type routeLog struct {
	inner   *synthLog
	mu      sync.Mutex
	rng     *rand.Rand
	unnamed bool
}

func (l *routeLog) Requests(ctx context.Context, since, until time.Time) ([]providers.Request, error) {
	reqs, err := l.inner.Requests(ctx, since, until)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	gets := []string{"GET /products/{id}", "GET /cart", "GET /search", "GET /users/{id}"}
	for i := range reqs {
		if l.rng.Float64() < 0.02 {
			if reqs[i].Cohort == providers.Canary && l.rng.Float64() < 0.5 {
				reqs[i].Status = 500
			}
			if !l.unnamed {
				reqs[i].Route = "POST /checkout/pay"
			}
			continue
		}
		if !l.unnamed {
			reqs[i].Route = gets[l.rng.IntN(len(gets))]
		}
	}
	return reqs, nil
}

// TestEngineRollsBackOnABrokenRoute: in the default mode (analysis.routes left out) the engine
// judges routes as soon as the requests name them, rolls the canary back on the route it breaks,
// names the route, and reports every route in the interval, the JSON report and JUnit (one testcase
// per route).
func TestEngineRollsBackOnABrokenRoute(t *testing.T) {
	t.Parallel()
	spec := seqSpec()
	gw := fake.NewGateway()
	log := &routeLog{inner: newSynthLog(gw, 400, 0.005, 3), rng: rand.New(rand.NewPCG(3, 18))}
	h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
	st := h.runUntil(50000, terminal)
	if st.Phase != RolledBack {
		t.Fatalf("phase %s: %s", st.Phase, st.Reason)
	}
	if !strings.Contains(st.Reason, "fail: route POST /checkout/pay: ") {
		t.Fatalf("reason %q does not name the route", st.Reason)
	}
	last := st.Intervals[len(st.Intervals)-1]
	if len(last.Routes) < 2 || last.Routes[0].Route != "POST /checkout/pay" || last.Routes[0].Verdict != VerdictFail {
		t.Fatalf("route rows %+v: want the broken route first, failed", last.Routes)
	}
	if !strings.HasPrefix(last.Reason, "fail: route POST /checkout/pay: ") || !strings.Contains(last.Reason, "; the service as a whole: ") {
		t.Errorf("the interval's reason %q does not start with the route's sentence", last.Reason)
	}
	// the alpha split: the service's fast 5xx test at 0.4 of (1 - alphaShare) * 0.01, each route's at
	// routeFastAlphaShare of alphaShare * 0.01 / 11
	for _, d := range last.Sequential.Decisions {
		if want := 1 - 0.4*(1-DefaultRouteAlphaShare)*0.01; d.Metric == "5xx-fast" && math.Abs(d.LowerLevel-want) > 1e-12 {
			t.Errorf("the service's 5xx-fast at level %v, want %v", d.LowerLevel, want)
		}
	}
	for _, d := range last.Routes[0].Decisions {
		if want := 1 - routeFastAlphaShare*DefaultRouteAlphaShare*0.01/11; d.Metric == "5xx-fast" && math.Abs(d.LowerLevel-want) > 1e-12 {
			t.Errorf("the route's 5xx-fast at level %v, want %v", d.LowerLevel, want)
		}
	}
	t.Logf("rolled back after %s of step %d: %s", last.At.Sub(last.Start), last.Step+1, st.Reason)
	rep := NewReport(spec, st)
	var js, ju strings.Builder
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	wants := []string{`"route": "POST /checkout/pay"`, `"route": "GET /products/{id}"`, `"canaryErrorPercent"`}
	for _, in := range st.Intervals {
		for _, r := range in.Routes {
			if r.TooLittleTraffic { // an interval before the routes had minRequests each (timing-dependent)
				wants = append(wants, `"tooLittleTraffic": true`)
			}
		}
	}
	for _, want := range wants {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON report lacks %s", want)
		}
	}
	if err := rep.WriteJUnit(&ju); err != nil {
		t.Fatal(err)
	}
	var x junitSuites
	if err := xml.Unmarshal([]byte(ju.String()), &x); err != nil {
		t.Fatal(err)
	}
	var routes *junitSuite
	for i := range x.Suites {
		if strings.HasSuffix(x.Suites[i].Name, " routes") {
			routes = &x.Suites[i]
		}
	}
	if routes == nil || routes.Tests != len(last.Routes) || routes.Fail != 1 {
		t.Fatalf("JUnit routes suite %+v: want one testcase per route (%d), one failed", routes, len(last.Routes))
	}
	if c := routes.Cases[0]; c.Name != "route POST /checkout/pay" || c.Failure == nil || !strings.Contains(c.Failure.Message, "5xx") {
		t.Errorf("first route testcase %+v", c)
	}
}

// TestEngineRoutesOffWithoutNames: requests that name no route leave the service's analyzer at
// the whole alpha and record no route rows; analysis.routes off does the same when they do.
func TestEngineRoutesOffWithoutNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		unnamed bool
		mode    string
	}{
		{"source names no routes", true, ""},
		{"routes off", false, RoutesOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := seqSpec()
			spec.Analysis.Routes.Mode = tc.mode
			gw := fake.NewGateway()
			log := &routeLog{inner: newSynthLog(gw, 400, 0.005, 4), rng: rand.New(rand.NewPCG(4, 18)), unnamed: tc.unnamed}
			h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
			st := h.runUntil(50000, func(st State) bool { return len(st.Intervals) >= 3 })
			for _, iv := range st.Intervals {
				if len(iv.Routes) > 0 {
					t.Fatalf("interval %d has route rows", iv.Index)
				}
				if iv.Sequential != nil {
					for _, d := range iv.Sequential.Decisions {
						if d.Metric == "5xx-fast" && d.LowerLevel != 1-0.4*0.01 {
							t.Fatalf("5xx-fast at level %v: the service lost alpha to routes not judged", d.LowerLevel)
						}
					}
				}
			}
		})
	}
}

// TestRouteSegmentsOfTheEmbeddedProxy: the embedded proxy records routes whenever the rollout may
// judge them, with the spec's segments, and not otherwise (its hot path then does no route work).
func TestRouteSegmentsOfTheEmbeddedProxy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		want int
	}{
		{"default", func(*Spec) {}, 2},
		{"auto with 3 segments", func(s *Spec) { s.Analysis.Routes = RoutesSpec{Mode: RoutesAuto, Segments: 3} }, 3},
		{"off", func(s *Spec) { s.Analysis.Routes.Mode = RoutesOff }, 0},
		{"kayenta", func(s *Spec) { s.Analysis.Mode = ModeKayenta }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := seqSpec()
			tc.mod(s)
			s.Analysis.Routes.setDefaults()
			if got := s.RouteSegments(); got != tc.want {
				t.Fatalf("RouteSegments() = %d, want %d", got, tc.want)
			}
		})
	}
}
