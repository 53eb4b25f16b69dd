package rollout

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/providers"
)

// RoutesSpec is analysis.routes: judge every route of the service on its own as well as the service
// as a whole, so that a canary that breaks one endpoint carrying 2% of the traffic is caught (see
// "analysis.routes" in rollout/README.md and routes_judge.go for the statistics).
//
//	routes: auto                                   # the default in mode sequential
//	routes: off                                    # the service as a whole only
//	routes: {segments: 3, top: 20, alphaShare: 0.2}
//	routes:
//	  - {name: pay, match: {pathPrefix: /checkout/pay}}
//	  - {name: search, match: {regex: '^/search(/.*)?$'}}
//	  - {name: orders, match: {kongRoute: orders-api}}
type RoutesSpec struct {
	// Mode is "auto" (group by the route the source names: Kong's route name, the proxy's path
	// template), "list" (the explicit List), "off", or "" when left out: auto in mode sequential
	// whenever the requests name routes (RoutesOnByDefault), off otherwise.
	Mode string `yaml:"-" json:"mode,omitempty"`
	// Segments: the built-in proxy names a route by the method and this many leading path segments
	// (default 2), numeric, UUID and long hexadecimal segments folded to {id}.
	Segments int `yaml:"segments" json:"segments,omitempty"`
	// Top: how many automatic routes, the busiest, are judged on their own (default 10); the rest
	// together as "other".
	Top int `yaml:"top" json:"top,omitempty"`
	// MinRequests: a route with fewer canary or control requests is reported as having too little
	// traffic to judge (default 50); it is never failed for that.
	MinRequests int `yaml:"minRequests" json:"minRequests,omitempty"`
	// AlphaShare: the routes' share of the rollout's false-rollback budget
	// (analysis.sequential.alpha), split evenly over them; the service keeps the rest (default 0.2).
	AlphaShare float64 `yaml:"alphaShare" json:"alphaShare,omitempty"`
	// List is the explicit form: first match wins, unmatched requests are "other".
	List []RouteSpec `yaml:"list" json:"list,omitempty"`
}

// RouteSpec is one explicitly named route.
type RouteSpec struct {
	Name  string         `yaml:"name" json:"name"`
	Match RouteMatchSpec `yaml:"match" json:"match"`
}

// RouteMatchSpec sets exactly one of PathPrefix (segment-wise: /checkout matches /checkout and
// /checkout/pay, not /checkouts), Regex (RE2 on the path, unanchored unless written with ^ and $)
// or KongRoute (the Kong route's name, kong-log). Paths are the request's path where the source
// keeps it (kong-log), else the path template the built-in proxy recorded.
type RouteMatchSpec struct {
	PathPrefix string `yaml:"pathPrefix,omitempty" json:"pathPrefix,omitempty"`
	Regex      string `yaml:"regex,omitempty" json:"regex,omitempty"`
	KongRoute  string `yaml:"kongRoute,omitempty" json:"kongRoute,omitempty"`
}

// Route settings.
const (
	RoutesAuto = "auto"
	RoutesList = "list"
	RoutesOff  = "off"

	DefaultRouteTop         = 10
	DefaultRouteMinRequests = 50
	DefaultRouteAlphaShare  = 0.5
	// MaxRoutes bounds top and the list: every route judged costs the others sensitivity.
	MaxRoutes = 50
	// OtherRoute names the requests of no judged route.
	OtherRoute = "other"
)

// UnmarshalYAML accepts auto, off, a mapping of settings (with list: the explicit form) or a list
// of routes. Unknown fields are errors naming the line, as everywhere in the spec.
func (r *RoutesSpec) UnmarshalYAML(n *yaml.Node) error {
	const want = "write auto, off, {segments: 2, top: 10} or a list of {name, match}"
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Value {
		case RoutesAuto, RoutesOff:
			*r = RoutesSpec{Mode: n.Value}
			return nil
		}
		return fmt.Errorf("line %d: %q is not valid; %s", n.Line, n.Value, want)
	case yaml.SequenceNode:
		if err := checkRouteList(n); err != nil {
			return err
		}
		var list []RouteSpec
		if err := n.Decode(&list); err != nil {
			return err
		}
		*r = RoutesSpec{Mode: RoutesList, List: list}
		return nil
	case yaml.MappingNode:
		// Node.Decode does not refuse unknown fields as the spec's decoder does: check them here
		if err := checkKeys(n, "analysis.routes", "segments", "top", "minRequests", "alphaShare", "list"); err != nil {
			return err
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "list" {
				if err := checkRouteList(n.Content[i+1]); err != nil {
					return err
				}
			}
		}
		type plain RoutesSpec
		var p plain
		if err := n.Decode(&p); err != nil {
			return err
		}
		*r = RoutesSpec(p)
		r.Mode = RoutesAuto
		if len(r.List) > 0 {
			r.Mode = RoutesList
		}
		return nil
	}
	return fmt.Errorf("line %d: %s", n.Line, want)
}

// YAMLSelfChecked: analysis.routes takes several shapes and checks its own fields (yamlerr).
func (RoutesSpec) YAMLSelfChecked() {}

// checkRouteList checks the fields of a list of routes: {name, match: {pathPrefix|regex|kongRoute}}.
func checkRouteList(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: list: write a list of {name, match}", n.Line)
	}
	for _, item := range n.Content {
		if err := checkKeys(item, "a route", "name", "match"); err != nil {
			return err
		}
		for i := 0; i+1 < len(item.Content); i += 2 {
			if item.Content[i].Value == "match" {
				if err := checkKeys(item.Content[i+1], "a route's match", "pathPrefix", "regex", "kongRoute"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkKeys refuses a mapping key that is not one of known (what names the mapping in the message).
func checkKeys(n *yaml.Node, what string, known ...string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s is a group of fields (%s)", n.Line, what, strings.Join(known, ", "))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(known, k.Value) {
			return fmt.Errorf("line %d: field %s not found in %s; use %s", k.Line, k.Value, what, strings.Join(known, ", "))
		}
	}
	return nil
}

// setDefaults fills the settings left out.
func (r *RoutesSpec) setDefaults() {
	if r.Segments == 0 {
		r.Segments = providers.DefaultRouteSegments
	}
	if r.Top == 0 {
		r.Top = DefaultRouteTop
	}
	if r.MinRequests == 0 {
		r.MinRequests = DefaultRouteMinRequests
	}
	if r.AlphaShare == 0 {
		r.AlphaShare = DefaultRouteAlphaShare
	}
}

// Explicit reports whether the spec asked for routes (auto or a list) rather than leaving them out.
func (r RoutesSpec) Explicit() bool { return r.Mode == RoutesAuto || r.Mode == RoutesList }

// RoutesOnByDefault: with analysis.routes left out, mode sequential judges routes whenever the
// requests of the first look that has any name routes (kong-log always does; the built-in proxy
// when it records templates). The choice depends only on whether the source records routes, never
// on what the requests show, so the alpha split below is fixed before any evidence is seen.
const RoutesOnByDefault = true

// RouteSegments is how many path segments the embedded built-in proxy records routes by: the
// spec's analysis.routes.segments when routes may be judged (mode sequential, routes not off), 0
// otherwise (the proxy then records no route and its hot path does no route work).
func (s *Spec) RouteSegments() int {
	if s.Analysis.Mode != ModeSequential || s.Analysis.Routes.Mode == RoutesOff || !RoutesOnByDefault && !s.Analysis.Routes.Explicit() {
		return 0
	}
	return s.Analysis.Routes.Segments
}

// validateRoutes reports mistakes in analysis.routes through bad (field, message).
func (s *Spec) validateRoutes(bad func(string, string, ...any)) {
	r := s.Analysis.Routes
	if r.Mode == RoutesOff || r.Mode == "" {
		return
	}
	const f = "analysis.routes"
	switch {
	case s.Analysis.Mode != ModeSequential:
		bad(f, "per-route verdicts run in analysis.mode sequential, not %s (for Prometheus use canaryctl analyze --route-label); remove analysis.routes or the mode", s.Analysis.Mode)
	case !perRequestSource(s.Metrics.Type):
		bad(f, "per-route verdicts need a per-request metrics source (builtin, kong-log), not %s; remove analysis.routes", s.Metrics.Type)
	}
	if r.Segments < 1 || r.Segments > providers.MaxRouteSegments {
		bad(f+".segments", "%d is out of range; use 1..%d (default %d)", r.Segments, providers.MaxRouteSegments, providers.DefaultRouteSegments)
	}
	if r.Top < 1 || r.Top > MaxRoutes {
		bad(f+".top", "%d is out of range; use 1..%d (default %d): every route judged costs the others sensitivity", r.Top, MaxRoutes, DefaultRouteTop)
	}
	if r.MinRequests < 1 {
		bad(f+".minRequests", "%d must be at least 1 (default %d)", r.MinRequests, DefaultRouteMinRequests)
	}
	if !(r.AlphaShare > 0 && r.AlphaShare < 1) {
		bad(f+".alphaShare", "%v is out of range; use a share above 0 and below 1 (default %v)", r.AlphaShare, DefaultRouteAlphaShare)
	}
	if len(r.List) > MaxRoutes {
		bad(f+".list", "%d routes; judge at most %d (every route judged costs the others sensitivity)", len(r.List), MaxRoutes)
	}
	seen := map[string]bool{}
	for i, rt := range r.List {
		p := fmt.Sprintf("%s[%d]", f, i)
		switch {
		case rt.Name == "":
			bad(p+".name", "required; e.g. checkout-pay")
		case rt.Name == OtherRoute:
			bad(p+".name", "%q names the requests of no listed route; choose another name", OtherRoute)
		case seen[rt.Name]:
			bad(p+".name", "%q is used twice; give every route its own name", rt.Name)
		}
		seen[rt.Name] = true
		if _, err := compileRoute(rt); err != nil {
			bad(p+".match", "%v", err)
		}
	}
}

// routeMatcher is a compiled RouteSpec.
type routeMatcher struct {
	name, prefix, kong string
	re                 *regexp.Regexp
}

func compileRoute(rt RouteSpec) (routeMatcher, error) {
	m := rt.Match
	n := 0
	for _, s := range []string{m.PathPrefix, m.Regex, m.KongRoute} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return routeMatcher{}, fmt.Errorf("set exactly one of pathPrefix, regex or kongRoute, e.g. {pathPrefix: /checkout/pay}")
	}
	c := routeMatcher{name: rt.Name, prefix: strings.TrimSuffix(m.PathPrefix, "/"), kong: m.KongRoute}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		return routeMatcher{}, fmt.Errorf("pathPrefix %q must start with /, e.g. /checkout/pay", m.PathPrefix)
	}
	if m.Regex != "" {
		re, err := regexp.Compile(m.Regex)
		if err != nil {
			return routeMatcher{}, fmt.Errorf("regex: %w", err)
		}
		c.re = re
	}
	return c, nil
}

// requestPath is the path a match looks at: the request's own (kong-log), else the path part of
// its route template ("GET /users/{id}" → "/users/{id}").
func requestPath(q providers.Request) string {
	if q.Path != "" {
		if i := strings.IndexAny(q.Path, "?#"); i >= 0 {
			return q.Path[:i]
		}
		return q.Path
	}
	if i := strings.IndexByte(q.Route, ' '); i >= 0 && strings.HasPrefix(q.Route[i+1:], "/") {
		return q.Route[i+1:]
	}
	if strings.HasPrefix(q.Route, "/") {
		return q.Route
	}
	return ""
}

func (m routeMatcher) match(q providers.Request) bool {
	switch {
	case m.kong != "":
		return q.Route == m.kong
	case m.re != nil:
		return m.re.MatchString(requestPath(q))
	}
	p := requestPath(q)
	return p != "" && (m.prefix == "" || p == m.prefix || strings.HasPrefix(p, m.prefix+"/"))
}

// routeKey is a request's route before the top-K choice: the explicit route's name (or other), or
// the route the source named ("" when it named none).
func routeKey(ms []routeMatcher, explicit bool, q providers.Request) string {
	if !explicit {
		return q.Route
	}
	for _, m := range ms {
		if m.match(q) {
			return m.name
		}
	}
	return OtherRoute
}

// topRoutes picks the k keys with the most requests (ties by name, for a stable choice); "" and
// "other" are never chosen.
func topRoutes(counts map[string]int, k int) []string {
	keys := make([]string, 0, len(counts))
	for key := range counts {
		if key != OtherRoute && key != "" {
			keys = append(keys, key)
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return strings.Compare(a, b)
	})
	if len(keys) > k {
		keys = keys[:k]
	}
	return keys
}
