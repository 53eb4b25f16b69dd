package rollout

import (
	"fmt"
	"math"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

// routeLooks is mode sequential's per-route state (analysis.routes): whether routes are judged in
// this rollout and, if so, their judge.
type routeLooks struct {
	decided bool
	judge   *RouteJudge // nil: the service alone
	warned  bool        // routes were asked for but the requests name none (said once)
	reason  string      // the failing route's sentence, for the interval that records it
}

// decideRoutes turns per-route judging on or off for the rollout, once, before the service's
// analyzer has seen a request: analysis.routes off never, auto or a list always, left out (the
// default) when the first look that has requests finds a route named in them (RoutesOnByDefault).
// With routes on, the service's analyzer is rebuilt at its share of alpha (RouteJudge): it has
// seen no request yet, so nothing it concluded is lost.
func (m *looks) decideRoutes(reqs []providers.Request) error {
	r := &m.seq.routes
	rs := m.e.spec.Analysis.Routes
	if r.judge != nil && !r.warned && rs.Explicit() && len(reqs) > 0 && !namesRoutes(reqs) {
		r.warned = true
		m.e.log.Warn("analysis.routes: the requests name no route, so every one counts as other; with an external canaryctl proxy run it with --route-segments",
			"segments", rs.Segments)
	}
	if r.decided {
		return nil
	}
	switch {
	case rs.Mode == RoutesOff || !RoutesOnByDefault && !rs.Explicit():
		r.decided = true
		return nil
	case rs.Explicit():
	case len(reqs) == 0:
		return nil // wait for the first requests
	case !namesRoutes(reqs):
		r.decided = true
		return nil
	}
	r.decided = true
	if rep := m.seq.a.Report(); rep.CanaryRequests+rep.BaselineRequests > 0 {
		return nil // cannot happen (decided at the first requests); the service keeps the whole alpha
	}
	if c, b := m.seq.a.Unpaired(); c+b > 0 {
		return nil
	}
	cfg := m.seq.a.Config()
	j, err := NewRouteJudge(rs, cfg, m.e.spec.ControlCohort())
	if err != nil {
		return err
	}
	cfg.Alpha = rs.ServiceAlpha(cfg.Alpha)
	a, err := sequential.New(cfg)
	if err != nil {
		return fmt.Errorf("analysis.routes: the service's analyzer at alpha %.3g: %w", cfg.Alpha, err)
	}
	m.seq.a, r.judge = a, j
	return nil
}

// namesRoutes reports whether any request names its route.
func namesRoutes(reqs []providers.Request) bool {
	for _, q := range reqs {
		if q.Route != "" {
			return true
		}
	}
	return false
}

func nan() float64 { return math.NaN() }
