package traffic

import (
	"reflect"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// steps changes the split every 7 s; it answers Route only.
type steps struct{}

func (steps) Route(t time.Time) Route {
	i := int(t.Sub(t0) / (7 * time.Second))
	return Route{Split: providers.Split{Canary: 100 * (i % 5), Baseline: 100 * (i % 5)}, Step: i}
}

// spanSteps is steps that also says when its route next changes.
type spanSteps struct{ steps }

func (s spanSteps) RouteSpan(t time.Time) (Route, time.Time) {
	i := t.Sub(t0) / (7 * time.Second)
	return s.Route(t), t0.Add((i + 1) * 7 * time.Second)
}

// TestSpanRouterGivesTheSameRequests: asking a SpanRouter once per route change gives the requests
// asking every request's route gives, with reads at odd moments that fall inside routes.
func TestSpanRouterGivesTheSameRequests(t *testing.T) {
	t.Parallel()
	m := base()
	m.Regression = Regression{FromStep: 3, AddErrorRate: 0.05}
	read := func(r Router) []providers.Request {
		g := New(m, t0, r, [2]uint64{3, 4})
		var log []providers.Request
		for at := t0; at.Before(t0.Add(2 * time.Minute)); at = at.Add(1300 * time.Millisecond) {
			log = g.AppendUntil(log, at)
		}
		return log
	}
	plain, span := read(steps{}), read(spanSteps{})
	if len(plain) < 10000 {
		t.Fatalf("%d requests in 2 minutes at 200 req/s", len(plain))
	}
	if !reflect.DeepEqual(plain, span) {
		t.Error("the requests differ when the router tells when its route changes")
	}
}
