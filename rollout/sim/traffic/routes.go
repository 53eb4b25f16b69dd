package traffic

import (
	"slices"
	"strconv"
)

// RouteShare is one route of the service: its name as the gateway records it (Request.Route, e.g.
// "POST /checkout/pay") and its share of the requests. Shares are relative: they are normalized to
// sum to 1.
type RouteShare struct {
	Name  string  `yaml:"name" json:"name"`
	Share float64 `yaml:"share" json:"share"`
}

// MaxRoutes bounds a model's routes.
const MaxRoutes = 1000

func (m Model) checkRoutes(c *checks) {
	seen := map[string]bool{}
	for i, r := range m.Routes {
		p := "routes[" + strconv.Itoa(i) + "]"
		if r.Name == "" {
			c.bad(p+".name", "required, e.g. \"POST /checkout/pay\"")
		}
		if seen[r.Name] {
			c.bad(p+".name", "%q is used twice", r.Name)
		}
		seen[r.Name] = true
		c.pos(p+".share", r.Share, "0.02")
	}
	if len(m.Routes) > MaxRoutes {
		c.bad("routes", "%d routes; at most %d", len(m.Routes), MaxRoutes)
	}
	if rt := m.Regression.Route; rt != "" && !slices.ContainsFunc(m.Routes, func(r RouteShare) bool { return r.Name == rt }) {
		c.bad("regression.route", "%q is not one of routes[].name; name one of them, or leave it out for every route", rt)
	}
}

// routeTable is the generator's view of the routes: cumulative shares for the draw, the names, and
// the index of the route the regression is confined to (-1: every route).
type routeTable struct {
	cum    []float64
	names  []string
	broken int
}

func newRouteTable(m Model) *routeTable {
	if len(m.Routes) == 0 {
		return nil
	}
	t := &routeTable{cum: make([]float64, len(m.Routes)), names: make([]string, len(m.Routes)), broken: -1}
	sum := 0.0
	for i, r := range m.Routes {
		sum += r.Share
		t.cum[i] = sum
		t.names[i] = r.Name
		if r.Name == m.Regression.Route {
			t.broken = i
		}
	}
	for i := range t.cum {
		t.cum[i] /= sum
	}
	return t
}

// pick draws a route for u uniform in [0, 1).
func (t *routeTable) pick(u float64) int {
	i, _ := slices.BinarySearch(t.cum, u)
	return min(i, len(t.cum)-1)
}
