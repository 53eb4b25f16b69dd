// Package kongtest is an in-process stand-in for Kong Gateway 3.x: an Admin API and a data plane
// (proxy) that follow Kong's documented behaviour closely enough to run canaryctl rollouts end to end
// in tests, without Docker or a database.
//
// What it mirrors, and from where (Kong/kong repository, 3.x, and developer.konghq.com):
//
//   - entities services, routes, upstreams, targets and plugins with Kong's field types, defaults and
//     ranges (kong/db/schema/entities/*.lua; see schema.go), 400 "schema violation" bodies with
//     `fields` (kong/db/errors.lua), 404 {"message":"Not found"}, 405 {"message":"Method not allowed"}
//     (kong/api/init.lua), 409 "unique constraint violation" on a second target with the same address
//     in an upstream (targets' cache_key {upstream, target});
//   - lists with `size` (default 100, 1..1000), an opaque `offset` and a `next` link, and the `tags`
//     filter (`a,b` = all of, `a/b` = any of) (kong/api/endpoints.lua, "Tags" in the Admin API docs);
//   - targets addressed by id or by "host:port" under /upstreams/{upstream}/targets/{target} with GET,
//     PATCH, PUT and DELETE (kong/api/routes/upstreams.lua); a target without a port gets 8000;
//   - the Enterprise RBAC header Kong-Admin-Token (401 without a valid token, 403 for a token that may
//     only read) and workspace path prefixes (/{workspace}/services...);
//   - DB-less mode: GET/POST /config with check_hash=1 (304 when the hash is unchanged) and 429 with
//     Retry-After while a previous configuration loads (kong/api/routes/config.lua);
//   - the data plane: routes matched by path prefix, the upstream named by the service's host balanced
//     with weighted round-robin (weight 0 = no traffic; no positive weight = 503 "failure to get a
//     peer from the ring-balancer"), consistent hashing when the upstream sets hash_on, retries on
//     connection failure to the next target up to the service's `retries`, the Enterprise canary
//     plugin, and the http-log plugin's JSON log entries (kong/pdk/log.lua serialize) sent through a
//     batching queue (kong/tools/queue.lua; an array body when queue.max_batch_size > 1).
//
// The data plane routes by per-upstream balancers that follow the database when they are rebuilt:
// at once by default, or WithBalancerDelay after a change as Kong's worker_state_update_frequency
// does; GET /upstreams/{u}/health shows them (balancer.go). Routes and services reach it through a
// router rebuilt the same way on a timer of its own (WithRouterDelay, router.go), which the Admin
// API does not show. Nested collections ignore `tags`, GET /
// reports a version (WithVersion) whose http-log schema applies, and ResetDatabase is a node that
// came back without its database.
package kongtest

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Option configures a Server.
type Option func(*Server)

// WithToken requires the Kong-Admin-Token header to equal token (Kong Enterprise RBAC).
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithReadOnlyToken accepts token for reads and answers 403 to writes made with it.
func WithReadOnlyToken(token string) Option { return func(s *Server) { s.readOnlyToken = token } }

// WithEnterprise enables Enterprise-only plugins (canary).
func WithEnterprise() Option { return func(s *Server) { s.enterprise = true } }

// WithDBLess runs the Admin API as Kong does with database=off: entity writes are refused and
// configuration is replaced through /config.
func WithDBLess() Option { return func(s *Server) { s.dbless = true } }

// WithWorkspaces adds workspaces besides "default".
func WithWorkspaces(names ...string) Option {
	return func(s *Server) {
		for _, n := range names {
			s.ws[n] = newStore()
		}
	}
}

// Server is a running fake Kong: an Admin API listener and a proxy listener on 127.0.0.1.
type Server struct {
	mu            sync.Mutex
	ws            map[string]*store
	token         string
	readOnlyToken string
	enterprise    bool
	dbless        bool
	configHash    string
	busy          []int // Retry-After seconds of the next POST /config answers

	outage     Outage
	adminCount int
	failed     int

	adminLn   net.Listener
	adminAddr string
	adminSrv  *http.Server
	hang      chan struct{}

	proxy    *httptest.Server
	client   *http.Client
	wrr      map[string]map[string]int // upstream id -> target id -> current (smooth WRR)
	queues   map[string]*logQueue      // plugin id -> queue
	hits     map[string]int            // target address -> requests proxied to it
	requests []AdminRequest
	closed   bool

	version       string
	nodeID        string
	balancers     map[string][]map[string]any // upstream id -> the targets its balancer routes to
	balancerDelay time.Duration
	balTimer      *time.Timer
	frozen        bool
	controlPlane  bool
	router        *store // routes and services as the node's router has them (router.go)
	routerDelay   time.Duration
	routerTimer   *time.Timer
}

// AdminRequest records one Admin API call, for tests that assert the calls canaryctl makes.
type AdminRequest struct {
	Method string
	Path   string // without the workspace prefix
	Query  string
	Body   string // the JSON body of POST, PUT and PATCH
	Status int
}

// New starts a Server. Close it when done.
func New(opts ...Option) *Server {
	s := &Server{
		ws:         map[string]*store{"default": newStore()},
		wrr:        map[string]map[string]int{},
		queues:     map[string]*logQueue{},
		hits:       map[string]int{},
		hang:       make(chan struct{}),
		configHash: strings.Repeat("0", 32),
		version:    "3.9.0",
		nodeID:     newID(),
		balancers:  map[string][]map[string]any{},
		client: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
		}, Timeout: 30 * time.Second},
	}
	for _, o := range opts {
		o(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("kongtest: listen: %v", err))
	}
	s.adminLn = ln
	s.adminAddr = ln.Addr().String()
	s.adminSrv = &http.Server{Handler: http.HandlerFunc(s.serveAdmin), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.adminSrv.Serve(ln) }()
	s.proxy = httptest.NewServer(http.HandlerFunc(s.serveProxy))
	return s
}

// AdminURL is the base URL of the Admin API.
func (s *Server) AdminURL() string { return "http://" + s.adminAddr }

// ProxyURL is the base URL of the data plane.
func (s *Server) ProxyURL() string { return s.proxy.URL }

// Close stops both listeners and flushes pending log batches.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.hang)
	if s.balTimer != nil {
		s.balTimer.Stop()
	}
	if s.routerTimer != nil {
		s.routerTimer.Stop()
	}
	srv := s.adminSrv
	queues := s.queues
	s.queues = map[string]*logQueue{}
	s.mu.Unlock()
	_ = srv.Close()
	s.proxy.Close()
	for _, q := range queues {
		q.stop()
	}
}

// FaultKind is a kind of Admin API outage.
type FaultKind int

// The outage kinds.
const (
	NoFault          FaultKind = iota
	Fault503                   // answer 503 {"message":"Service Unavailable"}
	FaultTimeout               // never answer (until the client gives up or the outage ends)
	FaultRefused               // close the listener: connections are refused
	FaultServerError           // answer 500 {"message":"An unexpected error occurred"} (database unreachable)
)

// Outage describes an Admin API outage: it starts after After more Admin API requests have been
// served and lasts for For failed requests (0: until Restore). FaultRefused lasts until Restore.
// The data plane keeps proxying with the last configuration, as Kong does when its database or
// control plane is down. With PathContains set the outage is partial: only the Admin API requests
// whose path (workspace prefix stripped) contains it are counted and failed, the rest are served (a
// test aims the failures at one caller's calls when several share the Admin API; not with
// FaultRefused, which closes the listener for all).
type Outage struct {
	Kind         FaultKind
	After        int
	For          int
	PathContains string
}

// InjectOutage schedules an outage.
func (s *Server) InjectOutage(o Outage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outage = o
	s.adminCount = 0
	s.failed = 0
	if o.Kind == FaultRefused && o.After == 0 {
		s.refuseLocked()
	}
}

// Restore ends an outage (re-opening the listener on the same address after FaultRefused).
func (s *Server) Restore() {
	s.mu.Lock()
	defer s.mu.Unlock()
	wasRefused := s.outage.Kind == FaultRefused && s.adminLn == nil
	s.outage = Outage{}
	if wasRefused && !s.closed {
		ln, err := net.Listen("tcp", s.adminAddr)
		if err != nil {
			panic(fmt.Sprintf("kongtest: re-listen on %s: %v", s.adminAddr, err))
		}
		s.adminLn = ln
		s.adminSrv = &http.Server{Handler: http.HandlerFunc(s.serveAdmin), ReadHeaderTimeout: 5 * time.Second}
		srv := s.adminSrv
		go func() { _ = srv.Serve(ln) }()
	}
}

func (s *Server) refuseLocked() {
	if s.adminLn == nil {
		return
	}
	srv := s.adminSrv
	s.adminLn = nil
	go func() { _ = srv.Close() }()
}

// BusyConfig makes the next len(retryAfter) POST /config answer 429 with those Retry-After seconds.
func (s *Server) BusyConfig(retryAfter ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = append(s.busy, retryAfter...)
}

// Requests returns the Admin API calls served so far.
func (s *Server) Requests() []AdminRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AdminRequest(nil), s.requests...)
}

// Hits returns how many proxied requests each target address received.
func (s *Server) Hits() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.hits))
	for k, v := range s.hits {
		m[k] = v
	}
	return m
}

// Target is a target as stored, for assertions.
type Target struct {
	ID     string
	Target string
	Weight int
	Tags   []string
}

// Targets returns the targets of an upstream (by name or id) in the default workspace.
func (s *Server) Targets(upstream string) []Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.ws["default"]
	u := st.find("upstreams", upstream)
	if u == nil {
		return nil
	}
	var out []Target
	for _, t := range st.children("targets", "upstream", u["id"].(string)) {
		out = append(out, Target{ID: t["id"].(string), Target: t["target"].(string), Weight: int(t["weight"].(int64)), Tags: strs(t["tags"])})
	}
	return out
}

// Entity returns a copy of an entity of the default workspace ("services", "upstreams", "plugins",
// ...) by id or endpoint key, or nil.
func (s *Server) Entity(kind, key string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.ws["default"].find(kind, key)
	if e == nil {
		return nil
	}
	return cloneValue(e).(map[string]any)
}

// Plugins returns copies of the plugins of the default workspace.
func (s *Server) Plugins() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, p := range s.ws["default"].list["plugins"] {
		out = append(out, cloneValue(p).(map[string]any))
	}
	return out
}

func strs(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, e := range a {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// ---- storage ----

type store struct {
	list map[string][]map[string]any // per entity kind, in creation order
}

func newStore() *store { return &store{list: map[string][]map[string]any{}} }

// endpointKey is the field an entity can be addressed by besides its id (schema endpoint_key).
var endpointKey = map[string]string{"services": "name", "routes": "name", "upstreams": "name", "targets": "target", "plugins": "instance_name"}

func (st *store) find(kind, key string) map[string]any {
	for _, e := range st.list[kind] {
		if e["id"] == key {
			return e
		}
	}
	ek := endpointKey[kind]
	if kind == "targets" {
		key = normalizeTarget(key)
	}
	for _, e := range st.list[kind] {
		if v, ok := e[ek].(string); ok && v == key {
			return e
		}
	}
	return nil
}

func (st *store) children(kind, fk, parentID string) []map[string]any {
	var out []map[string]any
	for _, e := range st.list[kind] {
		if ref, ok := e[fk].(map[string]any); ok && ref["id"] == parentID {
			out = append(out, e)
		}
	}
	return out
}

func (st *store) remove(kind, id string) {
	l := st.list[kind]
	for i, e := range l {
		if e["id"] == id {
			st.list[kind] = append(l[:i:i], l[i+1:]...)
			return
		}
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}

// ---- Admin API ----

type answer struct {
	status int
	body   any
	header map[string]string
}

func msg(status int, m string) answer {
	return answer{status: status, body: map[string]any{"message": m}}
}

var (
	notFound         = msg(http.StatusNotFound, "Not found")
	methodNotAllowed = msg(http.StatusMethodNotAllowed, "Method not allowed")
)

var collections = map[string]bool{"kong": true, "services": true, "routes": true, "upstreams": true, "targets": true, "plugins": true, "config": true, "status": true, "": true}

func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	// outage handling
	if o := s.outage; o.Kind != NoFault && (o.PathContains == "" || strings.Contains(stripWorkspace(r.URL.Path, s.ws), o.PathContains)) {
		if s.adminCount >= o.After {
			if o.For == 0 || s.failed < o.For {
				s.failed++
				s.requests = append(s.requests, AdminRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: -int(o.Kind)})
				switch o.Kind {
				case FaultTimeout:
					hang := s.hang
					s.mu.Unlock()
					select {
					case <-r.Context().Done():
					case <-hang:
					}
					return
				case FaultRefused:
					s.refuseLocked()
					s.mu.Unlock()
					hj, ok := w.(http.Hijacker)
					if ok {
						if c, _, err := hj.Hijack(); err == nil {
							_ = c.Close()
						}
					}
					return
				case FaultServerError:
					s.mu.Unlock()
					writeJSON(w, msg(http.StatusInternalServerError, "An unexpected error occurred"))
					return
				default:
					s.mu.Unlock()
					writeJSON(w, msg(http.StatusServiceUnavailable, "Service Unavailable"))
					return
				}
			}
			s.outage = Outage{}
		}
		s.adminCount++
	}
	var raw []byte
	if r.Body != nil {
		raw, _ = io.ReadAll(io.LimitReader(r.Body, 16<<20))
		r.Body = io.NopCloser(bytes.NewReader(raw))
	}
	a := s.handleLocked(r)
	s.requests = append(s.requests, AdminRequest{Method: r.Method, Path: stripWorkspace(r.URL.Path, s.ws), Query: r.URL.RawQuery, Body: string(raw), Status: a.status})
	w.Header().Set("Server", s.serverHeader())
	s.mu.Unlock()
	writeJSON(w, a)
}

func stripWorkspace(p string, ws map[string]*store) string {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	if len(segs) > 0 && !collections[segs[0]] && ws[segs[0]] != nil {
		return "/" + strings.Join(segs[1:], "/")
	}
	return p
}

func writeJSON(w http.ResponseWriter, a answer) {
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	if w.Header().Get("Server") == "" {
		w.Header().Set("Server", "kong/3.9.0 (kongtest)")
	}
	if a.body == nil {
		w.WriteHeader(a.status)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(a.status)
	_ = json.NewEncoder(w).Encode(a.body)
}

func (s *Server) handleLocked(r *http.Request) answer {
	if a := s.authorize(r); a != nil {
		return *a
	}
	st, segs, ok := s.route(r)
	if !ok {
		return notFound
	}
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPatch || r.Method == http.MethodPut {
		var err error
		if body, err = decodeBody(r); err != nil {
			return msg(http.StatusBadRequest, "Cannot parse JSON body")
		}
	}
	if len(segs) == 1 && segs[0] == "kong" {
		segs = nil // GET /{workspace}/kong: the node's info within a workspace (Kong Enterprise)
	}
	if len(segs) == 0 {
		if r.Method != http.MethodGet {
			return methodNotAllowed
		}
		db := "postgres"
		if s.dbless {
			db = "off"
		}
		// kong/api/routes/kong.lua GET /: version, node_id, tagline and the node's configuration
		return answer{status: 200, body: map[string]any{"version": s.version, "node_id": s.nodeID, "tagline": "Welcome to kong", "configuration": map[string]any{"database": db}}}
	}
	switch segs[0] {
	case "status":
		if len(segs) != 1 {
			return notFound
		}
		return answer{status: 200, body: map[string]any{"database": map[string]any{"reachable": true}, "configuration_hash": s.configHash}}
	case "config":
		if len(segs) != 1 {
			return notFound
		}
		return s.config(r, st)
	}
	if s.dbless && r.Method != http.MethodGet {
		// kong/db/strategies/off: writes are "operation unsupported" (code 12), answered 405.
		entity := segs[0]
		if len(segs) >= 3 {
			entity = segs[2]
		}
		op := map[string]string{http.MethodPost: "create", http.MethodPatch: "update", http.MethodPut: "create or update", http.MethodDelete: "remove"}[r.Method]
		return answer{status: http.StatusMethodNotAllowed, body: map[string]any{"code": 12, "name": "operation unsupported",
			"message": fmt.Sprintf("cannot %s '%s' entities when not using a database", op, entity)}}
	}
	kind := segs[0]
	if _, ok := schemas[kind]; !ok {
		return notFound
	}
	switch len(segs) {
	case 1: // /kind
		return s.collection(r, st, kind, body)
	case 2: // /kind/{key}
		return s.entity(r, st, kind, segs[1], body)
	case 3, 4: // /kind/{key}/sub[/{key}]
		return s.nested(r, st, segs, body)
	}
	return notFound
}

// authorize answers a request Enterprise RBAC refuses (nil: go on).
func (s *Server) authorize(r *http.Request) *answer {
	// Enterprise RBAC: kong/rbac (documented under "RBAC" in the Admin API reference).
	if s.token != "" || s.readOnlyToken != "" {
		tok := r.Header.Get("Kong-Admin-Token")
		switch {
		case tok != "" && tok == s.token:
		case tok != "" && tok == s.readOnlyToken:
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				a := msg(http.StatusForbidden, "you do not have permissions to "+verb(r.Method)+" this resource")
				return &a
			}
		default:
			a := msg(http.StatusUnauthorized, "Invalid credentials. Token or User credentials required")
			return &a
		}
	}
	return nil
}

// route splits the path into the workspace's store and the segments after it (false: unknown
// workspace).
func (s *Server) route(r *http.Request) (*store, []string, bool) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	wsName := "default"
	if len(segs) > 0 && !collections[segs[0]] {
		if s.ws[segs[0]] == nil {
			return nil, nil, false
		}
		wsName = segs[0]
		segs = segs[1:]
	}
	if len(segs) == 1 && segs[0] == "" {
		segs = nil
	}
	return s.ws[wsName], segs, true
}

// collection answers /kind.
func (s *Server) collection(r *http.Request, st *store, kind string, body map[string]any) answer {
	if kind == "targets" {
		if r.Method != http.MethodGet {
			return methodNotAllowed
		}
		return s.list(r, st, "targets", nil)
	}
	switch r.Method {
	case http.MethodGet:
		return s.list(r, st, kind, nil)
	case http.MethodPost:
		return s.create(st, kind, body, nil)
	}
	return methodNotAllowed
}

// entity answers /kind/{key}.
func (s *Server) entity(r *http.Request, st *store, kind, key string, body map[string]any) answer {
	if kind == "targets" {
		return notFound
	}
	e := st.find(kind, key)
	if a, ok := s.readOrPatch(r.Method, st, kind, e, body); ok {
		return a
	}
	switch r.Method {
	case http.MethodPut:
		return s.put(st, kind, key, e, body, nil)
	case http.MethodDelete:
		if e != nil {
			s.delete(st, kind, e)
		}
		return answer{status: http.StatusNoContent}
	}
	return methodNotAllowed
}

// readOrPatch answers a GET or PATCH of entity e of kind (nil: not there); ok false for other methods.
func (s *Server) readOrPatch(method string, st *store, kind string, e, body map[string]any) (a answer, ok bool) {
	switch {
	case method != http.MethodGet && method != http.MethodPatch:
		return answer{}, false
	case e == nil:
		return notFound, true
	case method == http.MethodGet:
		return answer{status: 200, body: e}, true
	}
	return s.update(st, kind, e, body), true
}

// nested answers /kind/{key}/sub[/{key}].
func (s *Server) nested(r *http.Request, st *store, segs []string, body map[string]any) answer {
	kind := segs[0]
	parent := st.find(kind, segs[1])
	sub := segs[2]
	if kind == "upstreams" && sub == "health" && len(segs) == 3 {
		if parent == nil {
			return notFound
		}
		return s.health(r, st, parent)
	}
	fk, ok := nested[kind+"/"+sub]
	if !ok {
		return notFound
	}
	if parent == nil {
		return notFound
	}
	ref := map[string]any{"id": parent["id"]}
	if len(segs) == 3 {
		return s.nestedCollection(r, st, sub, fk, parent, body)
	}
	key := segs[3]
	e := st.find(sub, key)
	if e != nil && !sameRef(e[fk], parent["id"]) {
		e = nil
	}
	if sub == "targets" && e == nil {
		// a target is found by id or by its address within the upstream
		for _, t := range st.children("targets", "upstream", parent["id"].(string)) {
			if t["target"] == normalizeTarget(key) {
				e = t
			}
		}
	}
	if a, ok := s.readOrPatch(r.Method, st, sub, e, body); ok {
		return a
	}
	switch r.Method {
	case http.MethodPut:
		if sub == "targets" {
			// kong/api/routes/upstreams.lua (3.x): PUT and PATCH of a target both go through
			// target_endpoint -> update_target_cb, an update of the fields sent; a target that is
			// not there is a 404, not an upsert.
			if e == nil {
				return notFound
			}
			return s.update(st, sub, e, body)
		}
		return s.put(st, sub, key, e, body, map[string]any{fk: ref})
	case http.MethodDelete:
		if e == nil && sub == "targets" {
			return notFound // target_endpoint: 404 before delete_target_cb
		}
		if e != nil {
			s.delete(st, sub, e)
		}
		return answer{status: http.StatusNoContent}
	}
	return methodNotAllowed
}

// nestedCollection answers /kind/{key}/sub: the sub-entities of parent, whose foreign key fk refers to it.
func (s *Server) nestedCollection(r *http.Request, st *store, sub, fk string, parent, body map[string]any) answer {
	switch r.Method {
	case http.MethodGet:
		return s.list(r, st, sub, func(e map[string]any) bool { return sameRef(e[fk], parent["id"]) })
	case http.MethodPost:
		return s.create(st, sub, body, map[string]any{fk: map[string]any{"id": parent["id"]}})
	}
	return methodNotAllowed
}

// nested collections and their foreign key (kong/api/routes/*.lua, generated endpoints).
var nested = map[string]string{
	"services/routes":   "service",
	"services/plugins":  "service",
	"routes/plugins":    "route",
	"upstreams/targets": "upstream",
}

func sameRef(v any, id any) bool {
	m, ok := v.(map[string]any)
	return ok && m["id"] == id
}

func verb(method string) string {
	switch method {
	case http.MethodPost:
		return "create"
	case http.MethodDelete:
		return "delete"
	default:
		return "update"
	}
}

func decodeBody(r *http.Request) (map[string]any, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(raw)) // /config reads it again
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string]any{}, nil
		}
		return nil, err
	}
	return m, nil
}

// tagFilter is the ?tags= filter of a list: a,b (all of them) or a/b (any of them); nil without
// one; an answer for an invalid one.
func tagFilter(tags string) (func(have []string) bool, *answer) {
	if tags == "" {
		return nil, nil
	}
	and, or := strings.Contains(tags, ","), strings.Contains(tags, "/")
	if and && or {
		return nil, &answer{status: 400, body: map[string]any{"code": 11, "name": "invalid options", "fields": map[string]any{"tags": "invalid filter syntax"}, "message": "invalid option (tags: invalid filter syntax)"}}
	}
	if or {
		want := strings.Split(tags, "/")
		return func(have []string) bool {
			return slices.ContainsFunc(want, func(w string) bool { return slices.Contains(have, w) })
		}, nil
	}
	want := strings.Split(tags, ",")
	return func(have []string) bool {
		return !slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(have, w) })
	}, nil
}

// list answers a paginated list: kong/api/endpoints.lua (page_collection): size 1..1000, default
// 100; `offset` is opaque; `next` is null on the last page.
func (s *Server) list(r *http.Request, st *store, kind string, keep func(map[string]any) bool) answer {
	q := r.URL.Query()
	size := 100
	if v := q.Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return answer{status: 400, body: map[string]any{"code": 9, "name": "invalid size", "message": "size must be an integer between 1 and 1000"}}
		}
		size = n
	}
	start := 0
	if v := q.Get("offset"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "kongtest:"))
		if err != nil || err2 != nil || !strings.HasPrefix(string(b), "kongtest:") || n < 0 {
			return answer{status: 400, body: map[string]any{"code": 7, "name": "invalid offset", "message": fmt.Sprintf("'%s' is not a valid offset: bad base64 encoding", v)}}
		}
		start = n
	}
	match, bad := tagFilter(q.Get("tags"))
	if bad != nil {
		return *bad
	}
	if keep != nil {
		// A nested collection (/services/{s}/plugins, /upstreams/{u}/targets) is paged by its
		// foreign key and the tags filter is dropped: the postgres strategy's page() picks the
		// page_for_<fk> statement before it looks at options.tags (kong/db/strategies/postgres/
		// init.lua, Kong 3.x), as the Admin API docs say ("Filtering by tags is not supported in
		// foreign key relationship endpoints"; Kong/kong#6779). The filter's syntax is still checked
		// (kong/api/endpoints.lua extract_options).
		match = nil
	}
	var all []map[string]any
	for _, e := range st.list[kind] {
		if keep != nil && !keep(e) {
			continue
		}
		if match != nil && !match(strs(e["tags"])) {
			continue
		}
		all = append(all, e)
	}
	end := start + size
	page := []map[string]any{}
	if start < len(all) {
		if end > len(all) {
			end = len(all)
		}
		page = all[start:end]
	}
	body := map[string]any{"data": page, "next": nil}
	if end < len(all) {
		off := base64.RawURLEncoding.EncodeToString([]byte("kongtest:" + strconv.Itoa(end)))
		v := q
		v.Set("offset", off)
		body["offset"] = off
		body["next"] = r.URL.Path + "?" + v.Encode()
	}
	return answer{status: 200, body: body}
}

func now() float64 { return float64(time.Now().Unix()) }

func (s *Server) create(st *store, kind string, body, fks map[string]any) answer {
	e, a := s.check(st, kind, nil, "", body, fks)
	if a != nil {
		return *a
	}
	e["id"] = newID()
	if id, ok := body["id"].(string); ok && isUUID(id) {
		e["id"] = id
	}
	e["created_at"] = now()
	e["updated_at"] = now()
	st.list[kind] = append(st.list[kind], e)
	s.onChange(kind, e)
	return answer{status: http.StatusCreated, body: e}
}

func (s *Server) update(st *store, kind string, e, body map[string]any) answer {
	var fks map[string]any
	if kind == "targets" {
		fks = map[string]any{"upstream": e["upstream"]}
	}
	ne, a := s.check(st, kind, e, e["id"].(string), body, fks)
	if a != nil {
		return *a
	}
	ne["updated_at"] = now()
	for k := range e {
		delete(e, k)
	}
	for k, v := range ne {
		e[k] = v
	}
	s.onChange(kind, e)
	return answer{status: 200, body: e}
}

// put creates or replaces an entity (kong/api/endpoints.lua, PUT = upsert by id or endpoint key).
func (s *Server) put(st *store, kind, key string, e, body, fks map[string]any) answer {
	if body == nil {
		body = map[string]any{}
	}
	if ek := endpointKey[kind]; ek != "" && !isUUID(key) {
		if _, ok := body[ek]; !ok {
			body[ek] = key
		}
	}
	if e == nil {
		if isUUID(key) {
			body["id"] = key
		}
		return s.create(st, kind, body, fks)
	}
	if fks == nil && kind == "targets" {
		fks = map[string]any{"upstream": e["upstream"]}
	}
	ne, a := s.check(st, kind, nil, e["id"].(string), body, fks)
	if a != nil {
		return *a
	}
	ne["id"], ne["created_at"], ne["updated_at"] = e["id"], e["created_at"], now()
	for k := range e {
		delete(e, k)
	}
	for k, v := range ne {
		e[k] = v
	}
	s.onChange(kind, e)
	return answer{status: 200, body: e}
}

// check validates body for kind (on top of base for PATCH) and enforces uniqueness; fks are foreign
// keys set by the route (the parent of a nested collection).
func (s *Server) check(st *store, kind string, base map[string]any, selfID string, body, fks map[string]any) (map[string]any, *answer) {
	e, errs := validate(schemas[kind], base, checkInput(kind, body, fks))
	if kind == "targets" {
		for k, v := range fks {
			e[k] = v
		}
		if t, ok := e["target"].(string); ok && errs["target"] == nil {
			e["target"] = normalizeTarget(t)
		}
	}
	if a := foreignKeys(st, e, errs); a != nil {
		return nil, a
	}
	if kind == "upstreams" {
		upstreamChecks(e, errs)
	}
	if kind == "plugins" && errs["name"] == nil {
		s.pluginChecks(e, errs, base, body)
	}
	if len(errs) > 0 {
		return nil, &answer{status: 400, body: schemaViolation(errs)}
	}
	if a := unique(st, kind, e, selfID); a != nil {
		return nil, a
	}
	return e, nil
}

// checkInput is the body's fields a write may set, with the foreign keys of its path.
func checkInput(kind string, body, fks map[string]any) map[string]any {
	in := map[string]any{}
	for k, v := range body {
		if k == "id" || k == "created_at" || k == "updated_at" {
			continue
		}
		in[k] = v
	}
	if kind == "targets" {
		delete(in, "upstream")
	}
	for k, v := range fks {
		if _, ok := in[k]; !ok || kind == "targets" {
			in[k] = v
		}
	}
	return in
}

// foreignKeys checks that the service and route an entity refers to exist.
func foreignKeys(st *store, e, errs map[string]any) *answer {
	// foreign keys must exist (kong/db/errors.lua FOREIGN_KEY_VIOLATION, code 4)
	for _, fk := range []string{"service", "route"} {
		if ref, ok := e[fk].(map[string]any); ok && errs[fk] == nil {
			target := st.find(fk+"s", fmt.Sprint(ref["id"]))
			if target == nil {
				if n, ok := ref["name"].(string); ok {
					target = st.find(fk+"s", n)
				}
			}
			if target == nil {
				return &answer{status: 400, body: map[string]any{"code": 4, "name": "foreign key violation", "fields": map[string]any{fk: ref},
					"message": fmt.Sprintf("the foreign key '{id=\"%v\"}' does not reference an existing '%ss' entity.", ref["id"], fk)}}
			}
			e[fk] = map[string]any{"id": target["id"]}
		}
	}
	return nil
}

// upstreamChecks are kong/db/schema/entities/upstreams.lua's entity checks.
func upstreamChecks(e, errs map[string]any) {
	// kong/db/schema/entities/upstreams.lua entity_checks: hash_on = header needs
	// hash_on_header, cookie needs hash_on_cookie.
	cond := func(on, need string) {
		if e["hash_on"] == on && e[need] == nil {
			errs["@entity"] = []any{"failed conditional validation given value of field 'hash_on'"}
			errs[need] = "required field missing"
		}
	}
	cond("header", "hash_on_header")
	cond("cookie", "hash_on_cookie")
	cond("query_arg", "hash_on_query_arg")
	cond("uri_capture", "hash_on_uri_capture")
}

// pluginChecks checks a plugin's name and config against its schema.
func (s *Server) pluginChecks(e, errs, base, body map[string]any) {
	name, _ := e["name"].(string)
	ps, ok := s.pluginSchema(name)
	if !ok || name == "canary" && !s.enterprise {
		errs["name"] = fmt.Sprintf("plugin '%s' not enabled; add it to the 'plugins' configuration property", name)
	} else {
		cin, _ := body["config"].(map[string]any)
		var cbase map[string]any
		if base != nil {
			cbase, _ = base["config"].(map[string]any)
		}
		if cin == nil {
			cin = map[string]any{}
		}
		c, cerrs := validate(ps, cbase, cin)
		if name == "canary" && len(cerrs) == 0 {
			if c["percentage"] == nil && c["start"] == nil {
				cerrs["@entity"] = []any{"at least one of these fields must be non-empty: 'config.percentage', 'config.start'"}
			}
			if c["upstream_host"] == nil && c["upstream_port"] == nil && c["upstream_uri"] == nil {
				cerrs["@entity"] = []any{"at least one of these fields must be non-empty: 'config.upstream_uri', 'config.upstream_host', 'config.upstream_port'"}
			}
			if c["hash"] == "header" && c["hash_header"] == nil {
				cerrs["hash_header"] = "required field missing"
			}
		}
		if len(cerrs) > 0 {
			errs["config"] = cerrs
		} else {
			e["config"] = c
		}
	}
}

// unique answers a write that would duplicate an entity's endpoint key (nil: none).
func unique(st *store, kind string, e map[string]any, id string) *answer {
	// uniqueness: kong/db/errors.lua UNIQUE_VIOLATION (code 5), 409.
	if ek := endpointKey[kind]; kind != "targets" && kind != "plugins" {
		if v, ok := e[ek].(string); ok {
			for _, o := range st.list[kind] {
				if o[ek] == v && o["id"] != id {
					return &answer{status: 409, body: map[string]any{"code": 5, "name": "unique constraint violation", "fields": map[string]any{ek: v},
						"message": fmt.Sprintf("UNIQUE violation detected on '{%s=\"%s\"}'", ek, v)}}
				}
			}
		}
	}
	if kind == "targets" {
		up := e["upstream"].(map[string]any)["id"].(string)
		for _, o := range st.children("targets", "upstream", up) {
			if o["target"] == e["target"] && o["id"] != id {
				return &answer{status: 409, body: map[string]any{"code": 5, "name": "unique constraint violation",
					"fields":  map[string]any{"target": e["target"], "upstream": map[string]any{"id": up}},
					"message": fmt.Sprintf("UNIQUE violation detected on '{target=\"%s\",upstream={id=\"%s\"}}'", e["target"], up)}}
			}
		}
	}
	if kind == "plugins" {
		for _, o := range st.list["plugins"] {
			if o["name"] == e["name"] && o["id"] != id && sameOrNil(o["service"], e["service"]) && sameOrNil(o["route"], e["route"]) && sameOrNil(o["consumer"], e["consumer"]) {
				return &answer{status: 409, body: map[string]any{"code": 5, "name": "unique constraint violation",
					"fields":  map[string]any{"name": e["name"], "service": e["service"], "route": e["route"], "consumer": e["consumer"]},
					"message": fmt.Sprintf("UNIQUE violation detected on '{consumer=null,name=\"%s\",route=null,service=%s}'", e["name"], refString(e["service"]))}}
			}
		}
	}
	return nil
}

func sameOrNil(a, b any) bool {
	am, _ := a.(map[string]any)
	bm, _ := b.(map[string]any)
	if am == nil || bm == nil {
		return am == nil && bm == nil
	}
	return am["id"] == bm["id"]
}

func refString(v any) string {
	if m, ok := v.(map[string]any); ok {
		return fmt.Sprintf("{id=\"%v\"}", m["id"])
	}
	return "null"
}

func (s *Server) delete(st *store, kind string, e map[string]any) {
	id := e["id"].(string)
	st.remove(kind, id)
	// on_delete = "cascade": targets of an upstream, routes and plugins of a service
	switch kind {
	case "upstreams":
		for _, t := range st.children("targets", "upstream", id) {
			st.remove("targets", t["id"].(string))
		}
	case "services":
		for _, p := range st.children("plugins", "service", id) {
			s.delete(st, "plugins", p)
		}
	case "plugins":
		if q := s.queues[id]; q != nil {
			delete(s.queues, id)
			go q.stop()
		}
	}
	if kind == "targets" || kind == "upstreams" {
		s.markDirtyLocked()
	}
	if kind == "services" || kind == "routes" {
		s.markRouterDirtyLocked()
	}
}

// onChange keeps data-plane state in step with the entities.
func (s *Server) onChange(kind string, e map[string]any) {
	if kind == "targets" || kind == "upstreams" {
		s.markDirtyLocked()
	}
	if kind == "services" || kind == "routes" {
		s.markRouterDirtyLocked()
	}
	if kind == "plugins" {
		id := e["id"].(string)
		if q := s.queues[id]; q != nil {
			delete(s.queues, id)
			go q.stop()
		}
	}
}

// Create adds an entity to a workspace ("" = default) as a POST to the Admin API would, bypassing
// authentication and DB-less mode: it seeds tests. Nested entities name their parent in body
// ("service": {"name": "web"} for routes and plugins; "upstream": "name or id" for targets).
// It returns the stored entity or an error with Kong's answer.
func (s *Server) Create(workspace, kind string, body map[string]any) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if workspace == "" {
		workspace = "default"
	}
	st := s.ws[workspace]
	if st == nil {
		return nil, fmt.Errorf("kongtest: no workspace %q", workspace)
	}
	// round-trip through JSON so numbers arrive as json.Number, as from a request
	var in map[string]any
	dec := json.NewDecoder(bytesReader(mustJSON(body)))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return nil, err
	}
	var fks map[string]any
	if kind == "targets" {
		u := st.find("upstreams", fmt.Sprint(in["upstream"]))
		if u == nil {
			return nil, fmt.Errorf("kongtest: no upstream %v", in["upstream"])
		}
		delete(in, "upstream")
		fks = map[string]any{"upstream": map[string]any{"id": u["id"]}}
	}
	a := s.create(st, kind, in, fks)
	if a.status != http.StatusCreated {
		return nil, fmt.Errorf("kongtest: create %s: %d %s", kind, a.status, mustJSON(a.body))
	}
	if s.dbless {
		s.configHash = hashOf(exportConfig(st))
	}
	return cloneValue(a.body).(map[string]any), nil
}

func hashOf(doc map[string]any) string {
	sum := md5.Sum(mustJSON(doc))
	return hex.EncodeToString(sum[:])
}
