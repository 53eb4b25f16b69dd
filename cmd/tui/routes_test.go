package tui

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/rollout"
)

// TestViewShowsTheWorstRoutes: with analysis.routes the metrics block ends with the routes, the worst
// first as the engine sorted them, a count of failed and thin ones, and at most maxRouteRows rows.
func TestViewShowsTheWorstRoutes(t *testing.T) {
	t.Parallel()
	st := analyzingState()
	routes := []rollout.RouteResult{
		{Route: "POST /checkout/pay", Verdict: rollout.VerdictFail, CanaryRequests: 19, ControlRequests: 960, CanaryErrorPercent: 47.4, ControlErrorPercent: 0.52},
		{Route: "GET /products/{id}", Verdict: rollout.VerdictNeedMoreData, CanaryRequests: 2900, ControlRequests: 2890, CanaryErrorPercent: 0.5, ControlErrorPercent: 0.48},
	}
	for i := range 4 {
		routes = append(routes, rollout.RouteResult{Route: fmt.Sprintf("GET /rare%d", i), Verdict: rollout.VerdictNeedMoreData, TooLittleTraffic: true,
			CanaryRequests: 3, ControlRequests: 2, CanaryErrorPercent: rollout.Number(math.NaN()), ControlErrorPercent: rollout.Number(math.NaN())})
	}
	st.Intervals = append(st.Intervals, rollout.Interval{Step: 1, Index: 3, At: at(22), Score: rollout.Number(math.NaN()),
		Verdict: rollout.VerdictFail, Baseline: 480, Canary: 480, Reason: "fail: route POST /checkout/pay: 5xx-fast 47.4% vs 0.52%",
		Metrics: []rollout.MetricResult{{Name: "5xx-rate", Classification: "Undecided", BaselineCount: 480, CanaryCount: 480}},
		Routes:  routes})
	m := withSnapshot(newTestModel(nil, nil), st)
	m.width, m.height = 160, 50
	v := m.View()
	for _, want := range []string{"routes · 6 judged, 1 failed, 4 with too little traffic", "POST /checkout/pay", "5xx 47.4% vs 0.52%", "too little traffic", "… 2 more"} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}
	if strings.Index(v, "POST /checkout/pay ") > strings.Index(v, "GET /products/{id}") {
		t.Errorf("the failed route is not first:\n%s", v)
	}
	if strings.Contains(v, "GET /rare3") {
		t.Errorf("more than %d route rows:\n%s", maxRouteRows, v)
	}
}
