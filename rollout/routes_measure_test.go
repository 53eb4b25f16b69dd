package rollout

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

// TestRouteJudgeMeasure measures the per-route judge against the service-level analyzer on many seeded
// rollouts at one split (no engine, no step changes): CANARYCTL_ROUTES_MEASURE=N runs N rollouts per
// row and logs the table; without it the test is skipped (minutes of CPU, not a unit test).
//
//	CANARYCTL_ROUTES_MEASURE=200 go test -run TestRouteJudgeMeasure -v ./rollout/
func TestRouteJudgeMeasure(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CANARYCTL_ROUTES_MEASURE"))
	if n <= 0 {
		t.Skip("set CANARYCTL_ROUTES_MEASURE=N to measure N rollouts per row")
	}
	routes20 := func(broken string) ([]string, []float64) {
		rs, sh := []string{broken}, []float64{0.02}
		for i := range 19 {
			rs = append(rs, fmt.Sprintf("GET /r%c", 'a'+i))
			sh = append(sh, 0.98/19)
		}
		return rs, sh
	}
	const limit = 10 * time.Minute
	for _, row := range []struct {
		name        string
		share       float64 // canary (and baseline) share of traffic
		brokenErr   float64 // the canary's 5xx rate on the broken route; 0.004: A/A
		backgroundE float64
	}{
		{"A/A 20 routes, 10% split", 0.10, 0.004, 0.004},
		{"50% 5xx on a 2% route, 2.5% split", 0.025, 0.5, 0.004},
		{"50% 5xx on a 2% route, 10% split", 0.10, 0.5, 0.004},
	} {
		var routeT, svcT []float64
		routeFails, svcFails := 0, 0
		for seed := range uint64(n) {
			rs, sh := routes20("POST /checkout/pay")
			g := &routeTraffic{rng: rand.New(rand.NewPCG(seed, 99)), rate: 200, canary: row.share, contrl: row.share, routes: rs, shares: sh,
				errRate: func(route string, c providers.Cohort) float64 {
					if c == providers.Canary && route == "POST /checkout/pay" {
						return row.brokenErr
					}
					return row.backgroundE
				}}
			spec := RoutesSpec{Auto: true, Top: 20, Segments: 1}
			base := sequential.DefaultConfig()
			j, err := NewRouteJudge(spec, base, providers.Baseline)
			if err != nil {
				t.Fatal(err)
			}
			sc := base
			sc.Alpha = spec.ServiceAlpha(base.Alpha)
			svc, _ := sequential.New(sc)
			full, _ := sequential.New(base) // the service alone with the whole budget, for the time
			start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			var rAt, sAt time.Duration
			for from := start; from.Sub(start) < limit && (rAt == 0 || sAt == 0); from = from.Add(5 * time.Second) {
				until := from.Add(5 * time.Second)
				reqs := g.look(from, 5*time.Second)
				if rAt == 0 {
					if v, _, _ := j.Observe(reqs, until); v == sequential.Fail {
						rAt = until.Sub(start)
					}
				}
				b := batchOf(reqs, providers.Baseline)
				b.Until = until
				if svc.Observe(b) == sequential.Fail && rAt == 0 {
					rAt = until.Sub(start) // the service-level analyzer of a routes rollout failed first
				}
				if sAt == 0 && full.Observe(b) == sequential.Fail {
					sAt = until.Sub(start)
				}
			}
			if rAt != 0 {
				routeFails++
				routeT = append(routeT, rAt.Seconds())
			}
			if sAt != 0 {
				svcFails++
				svcT = append(svcT, sAt.Seconds())
			}
		}
		t.Logf("%-36s | routes+service (alpha split): rolled back %d/%d, median %s | service only (alpha 0.01): rolled back %d/%d, median %s",
			row.name, routeFails, n, median(routeT), svcFails, n, median(svcT))
	}
}

func median(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	slices.Sort(xs)
	return fmt.Sprintf("%.0f s", xs[len(xs)/2])
}
