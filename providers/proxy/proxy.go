// Package proxy is canaryctl's built-in gateway: a weighted HTTP reverse proxy with three cohorts
// (stable, baseline, canary), an exact split in basis points or sticky hash buckets, routing
// rules evaluated before the split, an admin API, Prometheus metrics (client_golang, one registry
// per proxy; metrics.go) and an in-memory log of per-request samples for request-level analysis.
//
// The routing table is immutable and swapped atomically, so changes apply from the next request
// while in-flight requests finish where they started.
//
// Serve takes client connections with the proxy's own HTTP/1.1 loop (h1.go): bodiless GET, HEAD
// and OPTIONS requests to plain-http upstreams are parsed and proxied there without allocating,
// over a keep-alive pool of its own; any other request hands its connection to a net/http server
// running ServeHTTP. In ServeHTTP, the same kind of request takes a fast path (fast.go) over the
// same pool; everything else goes through httputil.ReverseProxy over a tuned http.Transport.
//
// Memory bound of the per-request samples: a fixed ring of Config.SampleCapacity slots (rounded
// up to a power of two) of 32 bytes each, allocated once in New — 8 MiB (8,388,608 bytes) at the
// default DefaultSampleCapacity of 262,144 samples, whatever the request rate; the newest sample
// overwrites the oldest. A Requests call copies the samples of its window out as
// providers.Request values of 64 bytes each (at most 16 MiB for a full default ring).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/canaryctl/canaryctl/internal/intern"
	"github.com/canaryctl/canaryctl/providers"
)

// Config configures a Proxy. Only Upstreams[stable] is required.
type Config struct {
	// Upstreams maps each cohort to its base URLs; stable must have at least one.
	Upstreams map[providers.Cohort][]string
	// Split is the initial split; a cohort with a share needs upstreams.
	Split providers.Split
	// HashOn makes cohorts sticky (see HashOn); empty or "none" uses the exact weighted wheel.
	HashOn HashOn
	// Rules route matching requests to a cohort before the split; first match wins.
	Rules []Rule
	// Deny: requests matching any of these never go to canary (they go to stable, by rule).
	Deny []Match
	// Allow: when set, only requests matching one of these may go to canary; others go to stable.
	Allow []Match
	// JWT verifies tokens for claim rules and the consumer hash key.
	JWT JWTConfig
	// PreserveHost sends the client's Host header upstream instead of the upstream's host.
	PreserveHost bool
	// TrustForwarded keeps the client's X-Forwarded-For (behind a trusted load balancer) and
	// appends the client's address to it; by default it is replaced by that address.
	// X-Forwarded-Host and X-Forwarded-Proto are always set from the request as received, and
	// Forwarded is dropped.
	TrustForwarded bool
	// GeoIP is the database country and continent matches need (see GeoIPConfig).
	GeoIP GeoIPConfig
	// DialTimeout, ResponseHeaderTimeout and IdleConnTimeout tune the upstream transport
	// (defaults 2 s, 60 s, 90 s); MaxIdleConnsPerHost defaults to 1024.
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	IdleConnTimeout       time.Duration
	MaxIdleConnsPerHost   int
	// ClientBodyTimeout bounds the wait for each read of a request body from the client (default
	// 60 s, nginx's client_body_timeout): a stalled upload is answered 408. SendTimeout bounds the
	// wait for each write of an answer to the client (default 60 s, nginx's send_timeout): a client
	// that stops reading is disconnected. Neither bounds a slow but moving transfer.
	ClientBodyTimeout time.Duration
	SendTimeout       time.Duration
	// UpstreamSendTimeout bounds the wait for each write of a request to an upstream (default
	// 60 s, nginx's proxy_send_timeout): an upstream that stops reading a request body is
	// answered 504 and counted against its cohort, instead of holding the request forever.
	UpstreamSendTimeout time.Duration
	// UpstreamReadTimeout bounds the wait for each read of an answer's body from an upstream, between
	// two reads (default 60 s, nginx's proxy_read_timeout; the head is bounded by
	// ResponseHeaderTimeout): an upstream that stalls mid-answer is cut off and counted as a 504
	// against its cohort (the client's connection is closed: its head was already sent).
	UpstreamReadTimeout time.Duration
	// RequestBodyBuffer is how much of a request body is read before the upstream is contacted
	// (default 64 KiB): a body that fits is sent upstream whole, with a Content-Length, so a client
	// trickling it or sending bad framing never holds an upstream connection nor reaches it (as
	// nginx's request buffering); a longer body is streamed after its first RequestBodyBuffer bytes.
	RequestBodyBuffer int
	// BackoffBase and BackoffMax bound the back-off of an upstream that refuses connections
	// (defaults 1 s and 30 s, doubling per consecutive failure).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// SampleCapacity is the number of per-request samples kept (default DefaultSampleCapacity).
	SampleCapacity int
	// RouteSegments, when positive, names each recorded request's route by its method and this
	// many leading path segments, identifiers folded ("GET /users/{id}"; analysis.routes); 0 (the
	// default) records no route and costs nothing (routes.go). At most MaxRouteSegments.
	RouteSegments int
	// Transport replaces the upstream transport (tests); nil builds a tuned http.Transport.
	Transport http.RoundTripper
	// Logger receives proxy errors; nil discards them.
	Logger *slog.Logger
	// Now is the clock (tests); nil uses time.Now.
	Now func() time.Time
}

// Proxy is the built-in gateway. It is an http.Handler for the data plane and satisfies the
// rollout engine's Gateway and RequestLog interfaces in process.
type Proxy struct {
	log       *slog.Logger
	now       func() time.Time
	wallClock bool // now is time.Now: its readings also serve for deadlines (h1 loop)
	table     atomic.Pointer[table]
	mu        sync.Mutex // serialises writers of table
	known     map[string]*upstream
	// instances names every upstream ever configured, by id-1 (upstream.id): append-only, written
	// under mu, so an id in a sample names the same upstream whatever reloads come after it.
	instances      atomic.Pointer[[]string]
	clients        intern.Table[uint32] // the clients of recorded requests (Request.Client)
	rr             *[nCohorts]atomic.Uint64
	wheelPos       atomic.Uint64
	hashKind       hashKind
	hashName       string
	rules          []compiledRule
	deny, allow    []*matcher
	jwt            *jwtVerifier
	geo            *geoDB // nil without geoip.mmdbFile
	needInfo       bool
	transport      http.RoundTripper
	closeIdle      func()
	fastOn         bool // the fast path is on unless Config.Transport replaces the transport
	fast           fastConfig
	rp             *httputil.ReverseProxy
	metrics        *metrics
	samples        *ring
	routes         *routeTable // nil unless Config.RouteSegments (routes.go)
	backoffBase    time.Duration
	backoffMax     time.Duration
	preserveHost   bool
	trustForwarded bool
	bodyTimeout    time.Duration
	sendTimeout    time.Duration
	bodyBuffer     int
	served         [nCohorts][2]atomic.Uint64
}

// New validates cfg and builds a Proxy.
func New(cfg Config) (*Proxy, error) {
	p := &Proxy{
		log: cfg.Logger, now: cfg.Now, known: map[string]*upstream{}, rr: new([nCohorts]atomic.Uint64),
		backoffBase: cfg.BackoffBase, backoffMax: cfg.BackoffMax,
		preserveHost: cfg.PreserveHost, trustForwarded: cfg.TrustForwarded,
		clients:     intern.Table[uint32]{Max: maxClients},
		bodyTimeout: cfg.ClientBodyTimeout, sendTimeout: cfg.SendTimeout, bodyBuffer: cfg.RequestBodyBuffer,
	}
	if p.bodyTimeout <= 0 {
		p.bodyTimeout = DefaultClientTimeout
	}
	if p.sendTimeout <= 0 {
		p.sendTimeout = DefaultClientTimeout
	}
	if p.bodyBuffer <= 0 {
		p.bodyBuffer = DefaultRequestBodyBuffer
	}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if p.now == nil {
		p.now, p.wallClock = time.Now, true
	}
	if p.backoffBase <= 0 {
		p.backoffBase = time.Second
	}
	if p.backoffMax < p.backoffBase {
		p.backoffMax = max(30*time.Second, p.backoffBase)
	}
	var err error
	if p.hashKind, p.hashName, err = parseHashOn(cfg.HashOn); err != nil {
		return nil, &ConfigError{Field: "hashOn", Err: err}
	}
	if cfg.JWT.configured() {
		if p.jwt, err = newJWTVerifier(cfg.JWT); err != nil {
			return nil, err
		}
	}
	for i, r := range cfg.Rules {
		field := fmt.Sprintf("rules[%d]", i)
		m, err := compileMatch(r.Match, field+".match")
		if err != nil {
			return nil, err
		}
		ci, ok := cohortIndex(r.Cohort)
		if !ok {
			return nil, configErrorf(field+".cohort", "%q is not a cohort (valid: stable, baseline, canary)", r.Cohort)
		}
		if m.kind == 'j' && p.jwt == nil {
			return nil, configErrorf(field+".match.claim", "claim rules need jwt keys (jwt.secret, jwt.publicKeyFiles or jwt.jwksFile)")
		}
		p.rules = append(p.rules, compiledRule{name: r.Name, m: m, cohort: ci})
	}
	for i, m := range cfg.Deny {
		c, err := compileMatch(m, fmt.Sprintf("deny[%d]", i))
		if err != nil {
			return nil, err
		}
		if c.kind == 'j' && p.jwt == nil {
			return nil, configErrorf(fmt.Sprintf("deny[%d].claim", i), "claim matches need jwt keys")
		}
		p.deny = append(p.deny, c)
	}
	for i, m := range cfg.Allow {
		c, err := compileMatch(m, fmt.Sprintf("allow[%d]", i))
		if err != nil {
			return nil, err
		}
		if c.kind == 'j' && p.jwt == nil {
			return nil, configErrorf(fmt.Sprintf("allow[%d].claim", i), "claim matches need jwt keys")
		}
		p.allow = append(p.allow, c)
	}
	if p.hashKind == hashConsumer && p.jwt == nil {
		return nil, configErrorf("hashOn", "consumer needs jwt keys to verify who the consumer is")
	}
	p.needInfo = p.hashKind != hashNone || len(p.rules) > 0 || len(p.deny) > 0 || len(p.allow) > 0
	if err := p.checkGeo(cfg.GeoIP); err != nil {
		return nil, err
	}

	t := &table{rr: p.rr}
	for c, addrs := range cfg.Upstreams {
		ci, ok := cohortIndex(c)
		if !ok {
			return nil, configErrorf("upstreams", "%q is not a cohort (valid: stable, baseline, canary)", c)
		}
		ups, err := p.resolve(addrs)
		if err != nil {
			return nil, &ConfigError{Field: "upstreams." + string(c), Err: err}
		}
		t.upstreams[ci] = ups
	}
	if len(t.upstreams[iStable]) == 0 {
		return nil, configErrorf("upstreams.stable", "at least one stable upstream is required (e.g. http://127.0.0.1:9001)")
	}
	if err := checkSplit(t, cfg.Split); err != nil {
		return nil, &ConfigError{Field: "split", Err: err}
	}
	t.split = cfg.Split
	t.wheel = buildWheel(cfg.Split)
	p.table.Store(t)

	p.transport = cfg.Transport
	if p.transport == nil {
		tr := newTransport(cfg)
		p.transport, p.closeIdle = tr, tr.CloseIdleConnections
		p.fastOn = true
		p.fast.dialer = net.Dialer{Timeout: dialTimeout(cfg), KeepAlive: 30 * time.Second}
		p.fast.rht, p.fast.idle, p.fast.perHost = tr.ResponseHeaderTimeout, tr.IdleConnTimeout, tr.MaxIdleConnsPerHost
		p.fast.read = cfg.UpstreamReadTimeout
		if p.fast.read <= 0 {
			p.fast.read = DefaultClientTimeout
		}
	}
	p.metrics = newMetrics(p.log)
	capacity := cfg.SampleCapacity
	if capacity <= 0 {
		capacity = DefaultSampleCapacity
	}
	p.samples = newRing(capacity)
	if cfg.RouteSegments < 0 || cfg.RouteSegments > providers.MaxRouteSegments {
		return nil, &ConfigError{Field: "routeSegments", Err: fmt.Errorf("%d is out of range; use 0 (no routes) to %d, e.g. %d", cfg.RouteSegments, providers.MaxRouteSegments, providers.DefaultRouteSegments)}
	}
	if cfg.RouteSegments > 0 {
		p.routes = newRouteTable(cfg.RouteSegments)
		p.samples.route = make([]atomic.Uint32, len(p.samples.slots))
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      (*retrier)(p),
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		BufferPool:     bufferPool{},
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	if cfg.GeoIP.MMDBFile != "" {
		if p.geo, err = newGeoDB(cfg.GeoIP, p.log); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

func dialTimeout(cfg Config) time.Duration {
	if cfg.DialTimeout <= 0 {
		return 2 * time.Second
	}
	return cfg.DialTimeout
}

func newTransport(cfg Config) *http.Transport {
	dial := dialTimeout(cfg)
	rht := cfg.ResponseHeaderTimeout
	if rht <= 0 {
		rht = 60 * time.Second
	}
	idle := cfg.IdleConnTimeout
	if idle <= 0 {
		idle = 90 * time.Second
	}
	send := cfg.UpstreamSendTimeout
	if send <= 0 {
		send = DefaultClientTimeout
	}
	perHost := cfg.MaxIdleConnsPerHost
	if perHost <= 0 {
		perHost = 1024
	}
	return &http.Transport{
		Proxy:               nil,
		DialContext:         sendTimeoutDialer(&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}, send),
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: perHost,
		// One connection per request on this path (requests with bodies, upgrades): http.Transport
		// takes bytes an upstream sent past an answer for the next request's answer when they are
		// already buffered as it is handed out (TestPostsAfterStrayBytesAreSentOnce caught one in a CI
		// run). nginx's default upstream (HTTP/1.0, no keepalive) does the same; the bodiless hot path
		// keeps its own checked pool.
		DisableKeepAlives:     true,
		IdleConnTimeout:       idle,
		ResponseHeaderTimeout: rht,
		ExpectContinueTimeout: time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		DisableCompression:    true,  // pass encodings through untouched
		ForceAttemptHTTP2:     false, // HTTP/1.1 upstreams, no h2 probing
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
}

// Close releases idle upstream connections.
func (p *Proxy) Close() error {
	if p.geo != nil {
		p.geo.close()
	}
	if p.closeIdle != nil {
		p.closeIdle()
	}
	p.fast.upstreams.Range(func(k, _ any) bool {
		k.(*upstream).pool.closeIdle()
		return true
	})
	return nil
}

// resolve turns addresses into upstream objects, reusing known ones so health state survives.
// The caller holds p.mu or is New.
func (p *Proxy) resolve(addrs []string) ([]*upstream, error) {
	out := make([]*upstream, 0, len(addrs))
	seen := map[string]bool{}
	for _, a := range addrs {
		u, err := parseUpstream(a)
		if err != nil {
			return nil, err
		}
		key := u.String()
		if seen[key] {
			return nil, fmt.Errorf("upstream %q listed twice", a)
		}
		seen[key] = true
		up := p.known[key]
		if up == nil {
			up = newUpstream(key, u)
			p.known[key] = up
			var names []string
			if cur := p.instances.Load(); cur != nil {
				names = *cur
			}
			names = append(names[:len(names):len(names)], key) // a new array: readers keep theirs
			up.id = uint32(len(names))
			p.instances.Store(&names)
		}
		out = append(out, up)
	}
	return out, nil
}

func checkSplit(t *table, s providers.Split) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if s.Canary > 0 && len(t.upstreams[iCanary]) == 0 {
		return fmt.Errorf("%w: canary has no upstreams; set them before giving it %s", providers.ErrNotFound, providers.Percent(s.Canary))
	}
	if s.Baseline > 0 && len(t.upstreams[iBaseline]) == 0 {
		return fmt.Errorf("%w: baseline has no upstreams; set them before giving it %s", providers.ErrNotFound, providers.Percent(s.Baseline))
	}
	return nil
}

// update applies f to a copy of the current table and swaps it in.
func (p *Proxy) update(f func(t *table) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.table.Load()
	nt := *old
	if err := f(&nt); err != nil {
		return err
	}
	if nt.split != old.split {
		nt.wheel = buildWheel(nt.split)
	}
	p.table.Store(&nt)
	return nil
}

// SetSplit sets the canary and baseline shares in basis points; stable gets the rest.
func (p *Proxy) SetSplit(_ context.Context, s providers.Split) error {
	err := p.update(func(t *table) error {
		if err := checkSplit(t, s); err != nil {
			return err
		}
		t.split = s
		return nil
	})
	if err != nil {
		return fmt.Errorf("proxy: set split to %s: %w", s, err)
	}
	p.log.Info("split set", "split", s.String())
	return nil
}

// Split returns the split applied now.
func (p *Proxy) Split(context.Context) (providers.Split, error) { return p.table.Load().split, nil }

// SetUpstreams points cohort c at addrs. An empty list removes baseline or canary (its share must
// be 0 first); stable always needs one.
func (p *Proxy) SetUpstreams(_ context.Context, c providers.Cohort, addrs []string) error {
	ci, ok := cohortIndex(c)
	if !ok {
		return &ConfigError{Field: "cohort", Err: fmt.Errorf("%q is not a cohort (valid: stable, baseline, canary)", c)}
	}
	err := p.update(func(t *table) error {
		ups, err := p.resolve(addrs)
		if err != nil {
			return &ConfigError{Field: "upstreams", Err: err}
		}
		if len(ups) == 0 {
			if ci == iStable {
				return &ConfigError{Field: "upstreams", Err: errors.New("stable needs at least one upstream")}
			}
			if t.split.Of(c) > 0 {
				return fmt.Errorf("%w: %s still has %s of the traffic; set its share to 0 or roll back first",
					providers.ErrInvalidSplit, c, providers.Percent(t.split.Of(c)))
			}
		}
		t.upstreams[ci] = ups
		return nil
	})
	if err != nil {
		return fmt.Errorf("proxy: set upstreams of %s: %w", c, err)
	}
	p.log.Info("upstreams set", "cohort", c, "upstreams", addrs)
	return nil
}

// Rollback removes the canary and baseline cohorts: all traffic goes to stable from the next request.
func (p *Proxy) Rollback(context.Context) error {
	_ = p.update(func(t *table) error {
		t.split = providers.Split{}
		t.upstreams[iCanary], t.upstreams[iBaseline] = nil, nil
		return nil
	})
	p.log.Info("rolled back: all traffic on stable")
	return nil
}

// Promote makes canary's upstreams stable's and removes the baseline and canary cohorts.
func (p *Proxy) Promote(context.Context) error {
	err := p.update(func(t *table) error {
		if len(t.upstreams[iCanary]) == 0 {
			return fmt.Errorf("%w: canary has no upstreams to promote", providers.ErrNotFound)
		}
		t.upstreams[iStable] = t.upstreams[iCanary]
		t.split = providers.Split{}
		t.upstreams[iCanary], t.upstreams[iBaseline] = nil, nil
		return nil
	})
	if err != nil {
		return fmt.Errorf("proxy: promote: %w", err)
	}
	p.log.Info("promoted: canary upstreams are stable")
	return nil
}

// State is a snapshot of the routing table, as served by the admin API.
type State struct {
	Split     providers.Split                 `json:"split"`
	Upstreams map[providers.Cohort][]string   `json:"upstreams"`
	Down      map[string]time.Time            `json:"down,omitempty"` // upstreams in back-off, until when
	HashOn    string                          `json:"hashOn"`
	Rules     int                             `json:"rules"`
	Served    map[providers.Cohort]ServedStat `json:"served"`
}

// ServedStat counts requests recorded per cohort since start.
type ServedStat struct {
	Split uint64 `json:"split"`
	Rule  uint64 `json:"rule"`
}

// State returns a snapshot of the routing table.
func (p *Proxy) State(context.Context) (State, error) {
	t := p.table.Load()
	st := State{Split: t.split, Upstreams: map[providers.Cohort][]string{}, Rules: len(p.rules),
		HashOn: hashOnString(p.hashKind, p.hashName), Served: map[providers.Cohort]ServedStat{}}
	now := p.now().UnixNano()
	for ci := range nCohorts {
		st.Upstreams[cohortNames[ci]] = t.addrs(ci)
		for _, u := range t.upstreams[ci] {
			if !u.healthy(now) {
				if st.Down == nil {
					st.Down = map[string]time.Time{}
				}
				st.Down[u.raw] = time.Unix(0, u.downUntil.Load())
			}
		}
		st.Served[cohortNames[ci]] = ServedStat{Split: p.served[ci][0].Load(), Rule: p.served[ci][1].Load()}
	}
	return st, nil
}

func hashOnString(k hashKind, name string) string {
	switch k {
	case hashIP:
		return "ip"
	case hashHeader:
		return "header:" + name
	case hashCookie:
		return "cookie:" + name
	case hashConsumer:
		return "consumer"
	}
	return "none"
}

// Requests returns the recorded requests that finished in [since, until), oldest first.
func (p *Proxy) Requests(_ context.Context, since, until time.Time) ([]providers.Request, error) {
	var names []string
	if cur := p.instances.Load(); cur != nil {
		names = *cur
	}
	return p.samples.collect(since, until, names, p.clients.Names(), p.routeNames()), nil
}

// MetricsHandler serves the Prometheus metrics of this proxy (its own registry).
func (p *Proxy) MetricsHandler() http.Handler {
	return p.metrics.handler
}

// call is the per-request routing decision, carried through the ReverseProxy in the context.
type call struct {
	t      *table
	cohort int
	byRule bool
	up     *upstream
	client uint32 // p.clients id
	status int
	abort  bool // the upstream broke off the body: abort the client's response after recording
	// clientErr: the client did not take its answer (fast path); body: the request body as read
	// from the client (nil without one); w: the ReverseProxy's writer (nil on the fast path).
	clientErr bool
	// upStatus: the status of the upstream's answer once ReverseProxy has it (0 before): a 5xx
	// is recorded as the upstream's whatever the client does afterwards
	upStatus int
	body     *clientBody
	w        *rpWriter
	conn     atomic.Pointer[upConn] // fast path: the upstream connection in use, for the client watcher
	ctx      callCtx
	route    uint32 // the route's id (Config.RouteSegments; 0 without)
}

type callKey struct{}

// callCtx is a context.Context carrying the *call without allocating a valueCtx per request.
type callCtx struct {
	context.Context
	c *call
}

func (c *callCtx) Value(key any) any {
	if _, ok := key.(callKey); ok {
		return c.c
	}
	return c.Context.Value(key)
}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// route picks the upstream for cohort want in t, counting a fallback when want has no healthy one.
func (p *Proxy) route(t *table, want int, now int64) (int, *upstream) {
	ci, up := t.route(want, now)
	if ci != want {
		p.metrics.fallback.Add(1)
	}
	return ci, up
}

// decide chooses the cohort of a request: deny list, rules, allow list, then the split (sticky
// bucket or the exact wheel). r is only read when rules or hashing are configured (needInfo).
func (p *Proxy) decide(t *table, r *http.Request) (ci int, byRule bool) {
	if !p.needInfo {
		return int(t.wheel[p.wheelPos.Add(1)%providers.BasisPoints]), false
	}
	ri := reqInfo{r: r, jwt: p.jwt, geo: p.geo, trustXFF: p.trustForwarded}
	for _, m := range p.deny {
		if m.match(&ri) {
			return iStable, true
		}
	}
	for i := range p.rules {
		if p.rules[i].m.match(&ri) {
			ci = p.rules[i].cohort
			if ci == iCanary && len(p.allow) > 0 && !anyMatch(p.allow, &ri) {
				ci = iStable
			}
			return ci, true
		}
	}
	if len(p.allow) > 0 && !anyMatch(p.allow, &ri) {
		return iStable, true
	}
	if p.hashKind != hashNone {
		if key, ok := p.stickyKey(&ri); ok {
			return bucketCohort(bucketOf(key), t.split), false
		}
	}
	return int(t.wheel[p.wheelPos.Add(1)%providers.BasisPoints]), false
}

func anyMatch(ms []*matcher, ri *reqInfo) bool {
	for _, m := range ms {
		if m.match(ri) {
			return true
		}
	}
	return false
}

// ServeHTTP proxies one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if refuseRequest(r) {
		w.Header().Set("Connection", "close")
		http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
		return
	}
	dropUnderscoreHeaders(r.Header)
	start := p.now()
	t := p.table.Load()
	want, byRule := p.decide(t, r)
	ci, up := p.route(t, want, start.UnixNano())
	c := &call{t: t, cohort: ci, byRule: byRule, up: up, status: http.StatusBadGateway, client: p.clientOf(r, "")}
	if p.routes != nil {
		c.route = routeID(p.routes, r.Method, requestPath(r))
	}
	recorded := false
	defer func() {
		// ReverseProxy aborts a response whose upstream body broke off (or whose client stopped
		// taking it) by panicking with http.ErrAbortHandler: record it, then let the server abort.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler && !recorded {
				end := p.now()
				switch {
				case c.upStatus >= 500:
					// the upstream failed first: its 5xx, whatever the client did afterwards
					p.record(end, end.Sub(start), c.upStatus, c.cohort, c.byRule, c.up, c.client, c.route)
				case c.body != nil && c.body.err != nil:
					p.recordClientError(end, end.Sub(start), clientStatus(c.body.err), c.cohort, c.byRule, c.up, c.client, c.route)
				case c.w != nil && c.w.werr != nil:
					p.recordClientError(end, end.Sub(start), statusClientClosed, c.cohort, c.byRule, c.up, c.client, c.route)
				case r.Context().Err() != nil:
					// the client left mid-answer (ReverseProxy's read of the upstream body ends
					// with the request's context): not the upstream's 502; 499 kept in the
					// analysis, as in the other paths, since the client may have left because
					// the upstream kept it waiting
					p.record(end, end.Sub(start), statusClientClosed, c.cohort, c.byRule, c.up, c.client, c.route)
				default:
					p.record(end, end.Sub(start), http.StatusBadGateway, c.cohort, c.byRule, c.up, c.client, c.route)
				}
			}
			panic(v)
		}
	}()
	if len(r.TransferEncoding) > 0 {
		// After a chunked body the connection is not read again: net/http cannot tell whether the
		// head also had a Content-Length (it drops it), and with both, RFC 9112 6.3 requires
		// closing — the bytes after the chunked body may be a request smuggled past a front proxy
		// that went by the length. (The h1 loop sees the head and answers 400, as nginx.)
		w.Header().Set("Connection", "close")
	}
	if up != nil && r.Body != nil && r.Body != http.NoBody {
		// the body (all of it when short) before the upstream: the client's errors are its own
		var err error
		if c.body, err = p.readBody(w, r); err != nil {
			status := clientStatus(err)
			answerClientError(w, status)
			end := p.now()
			p.recordClientError(end, end.Sub(start), status, c.cohort, c.byRule, c.up, c.client, c.route)
			recorded = true
			return
		}
	}
	switch {
	case up == nil:
		http.Error(w, "no upstream", http.StatusBadGateway)
	case p.fastOn && up.fast && fastOK(r):
		p.serveFast(w, r, c)
	default:
		p.serveRP(w, r, c)
	}
	end := p.now()
	switch {
	case c.upStatus >= 500:
		// the upstream failed first: its 5xx, whatever the client did afterwards
		p.record(end, end.Sub(start), c.upStatus, c.cohort, c.byRule, c.up, c.client, c.route)
	case c.body != nil && c.body.err != nil:
		// the rest of a long body failed on the client's side while it streamed upstream
		p.recordClientError(end, end.Sub(start), clientStatus(c.body.err), c.cohort, c.byRule, c.up, c.client, c.route)
	case c.clientErr || (c.w != nil && c.w.werr != nil):
		p.recordClientError(end, end.Sub(start), statusClientClosed, c.cohort, c.byRule, c.up, c.client, c.route)
	default:
		p.record(end, end.Sub(start), c.status, c.cohort, c.byRule, c.up, c.client, c.route)
	}
	recorded = true
	if c.abort {
		panic(http.ErrAbortHandler) // the server closes the client connection without logging
	}
}

// serveRP proxies through the httputil.ReverseProxy (everything the fast path does not take).
func (p *Proxy) serveRP(w http.ResponseWriter, r *http.Request, c *call) {
	c.ctx = callCtx{Context: r.Context(), c: c}
	c.w = &rpWriter{ResponseWriter: w}
	p.rp.ServeHTTP(c.w, r.WithContext(&c.ctx))
}

// instanceID is the sample's id of up (0 when no upstream answered).
func instanceID(up *upstream) uint32 {
	if up == nil {
		return 0
	}
	return up.id
}

// record records a request that up (nil: none) answered; client is its p.clients id and rid
// its route's id (0: none).
func (p *Proxy) record(end time.Time, lat time.Duration, status, ci int, byRule bool, up *upstream, client, rid uint32) {
	route := 0
	if byRule {
		route = 1
	}
	p.served[ci][route].Add(1)
	p.metrics.observe(ci, route, status, lat)
	p.samples.add(end.UnixNano(), lat, status, ci, byRule, false, instanceID(up), client, rid)
}

// recordClientError records a request the client broke — bad framing (400), an upload that
// stalled (408) or was broken off (499), an answer it did not take (499) — under its status code
// in canaryctl_proxy_requests_total, but not in the latency histogram nor in the request log the
// analysis reads (Requests): only the upstream's own failures count against a cohort.
func (p *Proxy) recordClientError(end time.Time, lat time.Duration, status, ci int, byRule bool, up *upstream, client, rid uint32) {
	route := 0
	if byRule {
		route = 1
	}
	p.served[ci][route].Add(1)
	p.metrics.counter(ci, route, status).Inc()
	p.samples.add(end.UnixNano(), lat, status, ci, byRule, true, instanceID(up), client, rid)
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	c := callFrom(pr.In.Context())
	pr.SetURL(c.up.url)
	if p.trustForwarded {
		if v := pr.In.Header["X-Forwarded-For"]; len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v
		}
	}
	pr.SetXForwarded()
	if p.preserveHost {
		pr.Out.Host = pr.In.Host
	}
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	if c := callFrom(resp.Request.Context()); c != nil {
		c.status, c.upStatus = resp.StatusCode, resp.StatusCode
	}
	return nil
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		status = http.StatusGatewayTimeout // no answer in time, or the upstream stopped reading
	}
	if c := callFrom(r.Context()); c != nil {
		if c.body != nil && c.body.err != nil {
			// the request body failed on the client's side while it streamed upstream
			answerClientError(w, clientStatus(c.body.err))
			return
		}
		c.status = status
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			c.status = statusClientClosed // client went away (nginx's convention)
		}
		p.log.Debug("proxy error", "cohort", cohortNames[c.cohort], "upstream", c.up.raw, "err", err)
	}
	w.WriteHeader(status)
}

// retrier is the ReverseProxy's transport: it marks upstreams that refuse connections for
// back-off and retries the request once more on another healthy upstream (same cohort, else
// stable) when that is safe: the request never reached an upstream and has no body to replay.
type retrier Proxy

func (rt *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	p := (*Proxy)(rt)
	c := callFrom(req.Context())
	for attempt := 0; ; attempt++ {
		resp, err := p.transport.RoundTrip(req)
		if c == nil {
			return resp, err
		}
		if err == nil {
			c.up.ok()
			return resp, nil
		}
		if !isDialError(err) {
			return nil, err
		}
		ci, next := p.refused(c.t, c.cohort, c.up, err, attempt < 2 && (req.Body == nil || req.Body == http.NoBody))
		if next == nil {
			return nil, err
		}
		c.cohort, c.up = ci, next
		req = req.Clone(req.Context())
		req.URL.Scheme, req.URL.Host = next.url.Scheme, next.url.Host
		if !p.preserveHost {
			req.Host = ""
		}
	}
}

// refused handles an upstream that refused a connection (err): it backs the upstream off and,
// when retry is set, returns the upstream to try next — another of the same cohort, else stable's
// (counted as a fallback) — or nil when there is none or no retry. Every proxy path (the h1 loop,
// the fast path, ReverseProxy's transport) fails over through here.
func (p *Proxy) refused(t *table, ci int, up *upstream, err error, retry bool) (int, *upstream) {
	now := p.now().UnixNano()
	d := up.fail(now, p.backoffBase, p.backoffMax)
	p.metrics.refused.Add(1)
	p.log.Warn("upstream refused connection; backing off", "upstream", up.raw, "cohort", cohortNames[ci], "backoff", d, "err", err)
	if !retry {
		return ci, nil
	}
	nci, next := t.next(ci, up, now)
	if next != nil && nci != ci {
		p.metrics.fallback.Add(1)
	}
	return nci, next
}

// isDialError reports whether err happened before the request was sent: a refused or failed
// connection, never a reset after writing.
func isDialError(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// bufferPool recycles the 32 KiB copy buffers of the ReverseProxy.
type bufferPool struct{}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(bufPool.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { bufPool.Put(&b) }
