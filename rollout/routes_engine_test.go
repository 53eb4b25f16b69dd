package rollout

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
)

// routeLog gives synthLog's requests paths: 2% go to POST /checkout/pay, where the canary answers
// 50% 5xx; the rest spread over four GET routes with synthLog's background errors.
type routeLog struct {
	inner *synthLog
	mu    sync.Mutex
	rng   *rand.Rand
}

func (l *routeLog) Requests(ctx context.Context, since, until time.Time) ([]providers.Request, error) {
	reqs, err := l.inner.Requests(ctx, since, until)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	gets := []string{"/products/1", "/cart", "/search?q=x", "/users/42"}
	for i := range reqs {
		if l.rng.Float64() < 0.02 {
			reqs[i].Method, reqs[i].Path = "POST", "/checkout/pay"
			if reqs[i].Cohort == providers.Canary && l.rng.Float64() < 0.5 {
				reqs[i].Status = 500
			}
			continue
		}
		reqs[i].Method, reqs[i].Path = "GET", gets[l.rng.IntN(len(gets))]
	}
	return reqs, nil
}

// TestEngineRollsBackOnABrokenRoute: the engine with analysis.routes auto rolls a canary back on
// the route it breaks, names the route, and reports every route in the interval, the JSON report and
// JUnit.
func TestEngineRollsBackOnABrokenRoute(t *testing.T) {
	t.Parallel()
	spec := seqSpec()
	spec.Analysis.Routes = RoutesSpec{Auto: true}
	gw := fake.NewGateway()
	log := &routeLog{inner: newSynthLog(gw, 400, 0.005, 3), rng: rand.New(rand.NewPCG(3, 18))}
	h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
	st := h.runUntil(20000, terminal)
	if st.Phase != RolledBack {
		t.Fatalf("phase %s: %s", st.Phase, st.Reason)
	}
	if !strings.Contains(st.Reason, "fail: route POST /checkout/pay: ") {
		t.Fatalf("reason %q does not name the route", st.Reason)
	}
	last := st.Intervals[len(st.Intervals)-1]
	if len(last.Routes) < 2 || last.Routes[0].Route != "POST /checkout/pay" || last.Routes[0].Verdict.String() != "fail" {
		t.Fatalf("route rows %+v: want the broken route first, failed", last.Routes)
	}
	t.Logf("rolled back after %s of step %d: %s", last.At.Sub(last.Start), last.Step+1, st.Reason)
	rep := NewReport(spec, st)
	var js, ju strings.Builder
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"route": "POST /checkout/pay"`) || !strings.Contains(js.String(), `"route": "GET /products/{id}"`) {
		t.Errorf("JSON report lacks the route rows")
	}
	if err := rep.WriteJUnit(&ju); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ju.String(), `name="route POST /checkout/pay"`) || !strings.Contains(ju.String(), `name="route GET /cart"`) {
		t.Errorf("JUnit lacks a testcase per route:\n%s", ju.String())
	}
}
