package proxy

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/canaryctl/canaryctl/providers"
)

// Routes (Config.RouteSegments, for analysis.routes): each recorded request names its route, the
// method and the first RouteSegments path segments with identifiers folded ("GET /users/{id}",
// providers.AppendRouteTemplate). A template is interned once in a copy-on-write table, so the h1
// loop finds its id with one lock-free map lookup and no allocation; the ring keeps the 32-bit id
// beside each sample. With RouteSegments 0 (the default) nothing of this runs: no template, no
// lookup, no id array in the ring.

// MaxRoutes bounds the proxy's route table: templates beyond it are recorded without a route (the
// analysis counts them as "other").
const MaxRoutes = 1024

// routeTable interns route templates: ids 1..MaxRoutes, names[id-1].
type routeTable struct {
	segments int
	mu       sync.Mutex                        // serializes additions
	ids      atomic.Pointer[map[string]uint32] // replaced, never changed, on addition
	names    atomic.Pointer[[]string]          // append-only
}

func newRouteTable(segments int) *routeTable {
	t := &routeTable{segments: segments}
	t.ids.Store(&map[string]uint32{})
	t.names.Store(&[]string{})
	return t
}

// routeText is a request's method or target as the h1 loop ([]byte) or net/http (string) holds it.
type routeText interface{ ~string | ~[]byte }

// routeID returns the id of a request's route template (0 when the table is full).
func routeID[M, P routeText](t *routeTable, method M, target P) uint32 {
	var buf [128]byte
	b := providers.AppendRouteTemplate(buf[:0], method, target, t.segments)
	if id, ok := (*t.ids.Load())[string(b)]; ok {
		return id
	}
	return t.add(string(b))
}

// add interns a new template.
func (t *routeTable) add(name string) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := *t.ids.Load()
	if id, ok := cur[name]; ok {
		return id
	}
	names := *t.names.Load()
	if len(names) >= MaxRoutes {
		return 0
	}
	next := make(map[string]uint32, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	names = append(names, name)
	id := uint32(len(names))
	next[name] = id
	t.names.Store(&names) // before the id is published: a sample never names an unknown id
	t.ids.Store(&next)
	return id
}

// routeNames returns the route names by id-1 (nil without routes).
func (p *Proxy) routeNames() []string {
	if p.routes == nil {
		return nil
	}
	return *p.routes.names.Load()
}

// requestPath is the request target the route template is built from: the raw target as the
// client sent it (origin form), or the URL's path for the absolute form.
func requestPath(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return r.URL.Path
}
