package proxy

import (
	"net/http"
	"strings"

	"github.com/canaryctl/canaryctl/internal/intern"
	"github.com/canaryctl/canaryctl/providers"
)

// Routes (Config.RouteSegments, for analysis.routes): each recorded request names its route, the
// method and the first RouteSegments path segments with identifiers folded ("GET /users/{id}",
// providers.AppendRouteTemplate). A template is interned once (internal/intern), so the h1 loop
// finds its id with one map lookup under a read lock and no allocation; the ring keeps the 32-bit id
// beside each sample. With RouteSegments 0 (the default) nothing of this runs: no template, no
// lookup, no id array in the ring.

// MaxRoutes bounds the proxy's route table: templates beyond it are recorded without a route (the
// analysis counts them as "other").
const MaxRoutes = 1024

// routeTable interns route templates: ids 1..MaxRoutes, names[id-1].
type routeTable struct {
	segments int
	names    intern.Table[uint32]
}

func newRouteTable(segments int) *routeTable {
	return &routeTable{segments: segments, names: intern.Table[uint32]{Max: MaxRoutes}}
}

// routeText is a request's method or target as the h1 loop ([]byte) or net/http (string) holds it.
type routeText interface{ ~string | ~[]byte }

// routeID returns the id of a request's route template (0 when the table is full).
func routeID[M, P routeText](t *routeTable, method M, target P) uint32 {
	var buf [128]byte
	return t.names.ID(providers.AppendRouteTemplate(buf[:0], method, target, t.segments))
}

// routeNames returns the route names by id-1 (nil without routes).
func (p *Proxy) routeNames() []string {
	if p.routes == nil {
		return nil
	}
	return p.routes.names.Names()
}

// requestPath is the request target the route template is built from: the raw target as the
// client sent it (origin form), or the URL's path for the absolute form.
func requestPath(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return r.URL.Path
}
