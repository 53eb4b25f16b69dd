package rollout

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/providers"
)

// RoutesSpec is analysis.routes: judge every route of the service on its own as well as the service
// as a whole, so a canary that breaks one endpoint carrying 2% of the traffic is caught. Either
// automatic (the Kong route name of a kong-log entry, else the method and the first Segments path
// segments with numeric, UUID and long hex segments folded to {id}; the Top routes by traffic are
// judged, the rest together as "other") or an explicit List, first match wins, unmatched requests
// are "other".
//
//	routes: auto                                   # Segments 2, Top 10
//	routes: {segments: 3, top: 20}
//	routes:
//	  - {name: pay, match: {pathPrefix: /checkout/pay}}
//	  - {name: search, match: {regex: '^/search(/.*)?$'}}
//	  - {name: orders, match: {kongRoute: orders-api}}
type RoutesSpec struct {
	// Auto: group automatically (see above). Set by "routes: auto" or the mapping form.
	Auto bool `yaml:"-" json:"auto,omitempty"`
	// Segments is how many leading path segments name an automatic route (default 2).
	Segments int `yaml:"segments" json:"segments,omitempty"`
	// Top is how many automatic routes are judged on their own (default 10); the rest are "other".
	Top int `yaml:"top" json:"top,omitempty"`
	// MinRequests is how many requests per cohort a route needs before a verdict on it can mean
	// anything; below that it is reported as having too little traffic (default 50).
	MinRequests int `yaml:"minRequests" json:"minRequests,omitempty"`
	// AlphaShare is the share of the rollout's false-rollback budget (analysis.sequential.alpha)
	// given to the routes together, the rest staying with the service-level analysis (default 0.5).
	AlphaShare float64 `yaml:"alphaShare" json:"alphaShare,omitempty"`
	// List is the explicit form.
	List []RouteSpec `yaml:"-" json:"list,omitempty"`
}

// RouteSpec is one explicitly named route.
type RouteSpec struct {
	Name  string         `yaml:"name" json:"name"`
	Match RouteMatchSpec `yaml:"match" json:"match"`
}

// RouteMatchSpec sets exactly one of PathPrefix (segment-wise: /checkout matches /checkout and
// /checkout/pay, not /checkouts), Regex (RE2 on the path, unanchored unless written with ^ and $)
// or KongRoute (the route name in Kong's log entry); Method optionally narrows it.
type RouteMatchSpec struct {
	PathPrefix string `yaml:"pathPrefix,omitempty" json:"pathPrefix,omitempty"`
	Regex      string `yaml:"regex,omitempty" json:"regex,omitempty"`
	KongRoute  string `yaml:"kongRoute,omitempty" json:"kongRoute,omitempty"`
	Method     string `yaml:"method,omitempty" json:"method,omitempty"`
}

// Route defaults.
const (
	DefaultRouteSegments    = 2
	DefaultRouteTop         = 10
	DefaultRouteMinRequests = 50
	DefaultRouteAlphaShare  = 0.5
	// OtherRoute names the requests of no judged route.
	OtherRoute = "other"
)

// Enabled reports whether per-route analysis is configured.
func (r RoutesSpec) Enabled() bool { return r.Auto || len(r.List) > 0 }

// UnmarshalYAML accepts "auto", a mapping with the automatic settings, or a list of routes.
func (r *RoutesSpec) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "auto" {
			return fmt.Errorf("line %d: routes: %q is not valid; write auto, {segments: 2, top: 10} or a list of {name, match}", n.Line, n.Value)
		}
		*r = RoutesSpec{Auto: true}
		return nil
	case yaml.SequenceNode:
		var list []RouteSpec
		if err := n.Decode(&list); err != nil {
			return err
		}
		*r = RoutesSpec{List: list}
		return nil
	case yaml.MappingNode:
		known := []string{"segments", "top", "minRequests", "alphaShare", "list"}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i].Value; !contains(known, k) {
				return fmt.Errorf("line %d: field %s not found in routes (valid: %s)", n.Content[i].Line, k, strings.Join(known, ", "))
			}
		}
		var p struct {
			Segments    int         `yaml:"segments"`
			Top         int         `yaml:"top"`
			MinRequests int         `yaml:"minRequests"`
			AlphaShare  float64     `yaml:"alphaShare"`
			List        []RouteSpec `yaml:"list"`
		}
		if err := n.Decode(&p); err != nil {
			return err
		}
		*r = RoutesSpec{Auto: len(p.List) == 0, Segments: p.Segments, Top: p.Top, MinRequests: p.MinRequests, AlphaShare: p.AlphaShare, List: p.List}
		return nil
	}
	return fmt.Errorf("line %d: routes: write auto, {segments: 2, top: 10} or a list of {name, match}", n.Line)
}

func (r RoutesSpec) withDefaults() RoutesSpec {
	if r.Segments == 0 {
		r.Segments = DefaultRouteSegments
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
	return r
}

// validate reports mistakes through bad (field, message). Routes are judged in mode sequential on
// per-request data that names the route: kong-log today (the built-in proxy does not record paths
// yet, Prometheus has no requests). A spec that asks for routes where they cannot be judged is an
// error rather than a silent service-only analysis.
func (r RoutesSpec) validate(s *Spec, bad func(string, string, ...any)) {
	if !r.Enabled() {
		return
	}
	const f = "analysis.routes"
	switch {
	case s.Metrics.Type != "kong-log":
		bad(f, "per-route analysis needs metrics.type kong-log (Kong's log names each request's route); the built-in proxy does not record paths yet and Prometheus is judged per service only; remove analysis.routes")
	case s.Analysis.Mode != ModeSequential:
		bad(f, "per-route analysis runs in analysis.mode sequential, not %s; remove analysis.mode or analysis.routes", s.Analysis.Mode)
	}
	if r.Segments < 0 || r.Segments > 8 {
		bad(f+".segments", "%d is out of range; use 1..8 (default %d)", r.Segments, DefaultRouteSegments)
	}
	if r.Top < 0 || r.Top > 50 {
		bad(f+".top", "%d is out of range; use 1..50 (default %d): every route judged costs the others sensitivity", r.Top, DefaultRouteTop)
	}
	if r.MinRequests < 0 {
		bad(f+".minRequests", "%d must not be negative (default %d)", r.MinRequests, DefaultRouteMinRequests)
	}
	if r.AlphaShare < 0 || r.AlphaShare >= 1 {
		bad(f+".alphaShare", "%v is out of range; use a share above 0 and below 1 (default %v)", r.AlphaShare, DefaultRouteAlphaShare)
	}
	if len(r.List) > 50 {
		bad(f, "%d routes; judge at most 50 (every route judged costs the others sensitivity)", len(r.List))
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
			bad(p+".name", "%q is used twice", rt.Name)
		}
		seen[rt.Name] = true
		if _, err := compileRoute(rt); err != nil {
			bad(p+".match", "%v", err)
		}
	}
}

// routeMatcher is a compiled RouteSpec.
type routeMatcher struct {
	name, prefix, kong, method string
	re                         *regexp.Regexp
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
		return routeMatcher{}, fmt.Errorf("set exactly one of pathPrefix, regex or kongRoute")
	}
	c := routeMatcher{name: rt.Name, prefix: m.PathPrefix, kong: m.KongRoute, method: strings.ToUpper(m.Method)}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		return routeMatcher{}, fmt.Errorf("pathPrefix %q must start with /", m.PathPrefix)
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

func (m routeMatcher) match(r providers.Request) bool {
	if m.method != "" && !strings.EqualFold(r.Method, m.method) {
		return false
	}
	switch {
	case m.kong != "":
		return r.KongRoute == m.kong
	case m.re != nil:
		return m.re.MatchString(pathOnly(r.Path))
	}
	p := pathOnly(r.Path)
	pre := strings.TrimSuffix(m.prefix, "/")
	return pre == "" || p == pre || strings.HasPrefix(p, pre+"/")
}

// pathOnly drops the query and fragment of a request target.
func pathOnly(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	return p
}

// PathTemplate is the automatic name of a path: its first n segments, with numeric, UUID and long
// hexadecimal segments folded to {id} ("/users/123/orders" with n 2 is "/users/{id}"). The root
// and an empty path are "/".
func PathTemplate(path string, n int) string {
	p := pathOnly(path)
	var b strings.Builder
	k := 0
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" {
			continue
		}
		if k == n {
			break
		}
		b.WriteByte('/')
		if isIDSegment(seg) {
			b.WriteString("{id}")
		} else {
			b.WriteString(seg)
		}
		k++
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func isIDSegment(s string) bool {
	digits, hex := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			hex++
		}
	}
	switch {
	case digits == len(s):
		return true // 123
	case len(s) >= 16 && digits+hex == len(s) && digits > 0:
		return true // a hash or an object id
	}
	return len(s) == 36 && uuidRE.MatchString(s)
}

// routeKey is a request's route before the top-K choice: the explicit route's name, or the
// automatic name (Kong route name, else "METHOD /template").
func (r RoutesSpec) routeKey(ms []routeMatcher, q providers.Request) string {
	if !r.Auto {
		for _, m := range ms {
			if m.match(q) {
				return m.name
			}
		}
		return OtherRoute
	}
	if q.KongRoute != "" {
		return q.KongRoute
	}
	t := PathTemplate(q.Path, r.Segments)
	if q.Method == "" {
		return t
	}
	return strings.ToUpper(q.Method) + " " + t
}

// topRoutes picks the k keys with the most requests (ties by name, for a stable choice).
func topRoutes(counts map[string]int, k int) []string {
	keys := make([]string, 0, len(counts))
	for key := range counts {
		if key != OtherRoute {
			keys = append(keys, key)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	if len(keys) > k {
		keys = keys[:k]
	}
	return keys
}
