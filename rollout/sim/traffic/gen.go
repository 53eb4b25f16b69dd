package traffic

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// Route is how the gateway routes at a moment: its split, and the rollout's step (0-based; -1
// before the first step's split was set).
type Route struct {
	Split providers.Split
	Step  int
}

// Router tells the generator the route in effect at t. Calls come with non-decreasing t.
type Router interface {
	Route(t time.Time) Route
}

// SpanRouter is a Router that also tells when the route it returns next changes (the zero time:
// no later change is known). The generator then asks once per route change instead of once per
// request; the answer must hold until the generator's next AppendUntil or Advance call.
type SpanRouter interface {
	Router
	RouteSpan(t time.Time) (Route, time.Time)
}

// Counts are the requests a cohort served.
type Counts struct {
	Requests, Errors int64
}

// Generator produces one rollout's requests from a Model. It is not safe for concurrent use.
type Generator struct {
	m      Model
	t0     time.Time
	rng    *rand.Rand
	router Router

	next  float64 // seconds since t0 of the next arrival
	phase float64 // diurnal phase, seconds
	// diurnal is the daily cycle's factor for the second starting at diurnalAt.
	diurnal, diurnalAt float64
	pending            finishQueue

	events   []process
	cohorts  [3]cohortState // stable, baseline, canary
	clients  *clientPop
	q90, q99 float64     // body-and-tail quantiles for Regression.TailFactor
	routes   *routeTable // nil without Model.Routes
	counts   [3]Counts

	// The route of the last arrival, valid for arrivals before rtUntil (since t0) in this
	// AppendUntil call when rtOK (SpanRouter).
	rt      Route
	rtUntil time.Duration
	rtOK    bool
}

type cohortState struct {
	c         Cohort
	deployed  float64 // seconds since t0
	instances []process
	names     []string // the instances' names (providers.Request.Instance)
}

// process is a renewal process of episodes: [start, end) is the current or next episode.
type process struct {
	ep         *Episode
	start, end float64
}

func (p *process) init(ep *Episode, rng *rand.Rand, from float64) {
	p.ep = ep
	p.end = from
	p.schedule(rng)
}

func (p *process) schedule(rng *rand.Rand) {
	p.start = p.end + rng.ExpFloat64()*p.ep.Every.Seconds()
	d := p.ep.Duration.Seconds()
	if p.ep.DurationMax > p.ep.Duration {
		d += rng.Float64() * (p.ep.DurationMax - p.ep.Duration).Seconds()
	}
	p.end = p.start + d
}

// active reports whether an episode covers t (t non-decreasing between calls).
func (p *process) active(t float64, rng *rand.Rand) bool {
	for t >= p.end {
		p.schedule(rng)
	}
	return t >= p.start
}

type clientPop struct {
	cum    []float64 // cumulative rate weights, normalized to end at 1
	lat    []float64
	err    []float64
	bucket []float64 // the sticky hash position in [0, 1)
	names  []string  // the client keys requests carry (providers.Request.Client)
}

// New returns a generator starting at t0 with its own random stream seeded by seed. The model is
// taken with WithDefaults and must be valid.
func New(m Model, t0 time.Time, router Router, seed [2]uint64) *Generator {
	m = m.WithDefaults()
	rng := rand.New(rand.NewPCG(seed[0], seed[1]))
	g := &Generator{m: m, t0: t0, rng: rng, router: router}
	g.phase = rng.Float64() * m.Rate.Diurnal.Period.Seconds()
	g.events = make([]process, len(m.Events))
	for i := range m.Events {
		g.events[i].init(&m.Events[i].Episode, rng, 0)
	}
	for i, c := range []Cohort{m.Cohorts.Stable, m.Cohorts.Baseline, m.Cohorts.Canary} {
		cs := cohortState{c: c, instances: make([]process, c.Instances), names: make([]string, c.Instances)}
		for j := range cs.names {
			cs.names[j] = fmt.Sprintf("%s-%d", cohortOf[i], j)
		}
		if c.Episodes != nil {
			for j := range cs.instances {
				cs.instances[j].init(c.Episodes, rng, 0)
			}
		}
		g.cohorts[i] = cs
	}
	if c := m.Clients; c != nil {
		p := &clientPop{cum: make([]float64, c.Count), lat: make([]float64, c.Count), err: make([]float64, c.Count),
			bucket: make([]float64, c.Count), names: make([]string, c.Count)}
		h := c.Heterogeneity
		sum := 0.0
		for i := range c.Count {
			sum += math.Exp(h.Rate * rng.NormFloat64())
			p.cum[i] = sum
			p.lat[i] = math.Exp(h.Latency * rng.NormFloat64())
			p.err[i] = math.Exp(h.Errors*rng.NormFloat64() - h.Errors*h.Errors/2)
			p.bucket[i] = rng.Float64()
			p.names[i] = fmt.Sprintf("client-%d", i)
		}
		for i := range p.cum {
			p.cum[i] /= sum
		}
		g.clients = p
	}
	if m.Regression.TailFactor != 1 {
		g.q90, g.q99 = m.Latency.Quantile(0.90), m.Latency.Quantile(0.99)
	}
	g.routes = newRouteTable(m)
	g.diurnalAt = -1
	g.next = g.gap(0)
	return g
}

// Deployed records when a cohort's instances were deployed (their cold start begins); by default at t0.
func (g *Generator) Deployed(c providers.Cohort, at time.Time) {
	g.cohorts[index(c)].deployed = at.Sub(g.t0).Seconds()
}

// Counts returns the requests a cohort served so far (finished and emitted or not).
func (g *Generator) Counts(c providers.Cohort) Counts { return g.counts[index(c)] }

func index(c providers.Cohort) int {
	switch c {
	case providers.Baseline:
		return 1
	case providers.Canary:
		return 2
	}
	return 0
}

var cohortOf = [3]providers.Cohort{providers.Stable, providers.Baseline, providers.Canary}

// rate is the arrival rate at t (seconds since t0); it advances the shared events.
func (g *Generator) rate(t float64) float64 {
	r := g.m.Rate.RPS
	if a := g.m.Rate.Diurnal.Amplitude; a > 0 {
		// The daily cycle changes the rate by at most 2π·a/period per second (7e-5 for ±30% a
		// day): it is evaluated once per second of virtual time.
		if sec := math.Floor(t); sec != g.diurnalAt {
			g.diurnalAt = sec
			g.diurnal = 1 + a*math.Sin(2*math.Pi*(g.phase+sec)/g.m.Rate.Diurnal.Period.Seconds())
		}
		r *= g.diurnal
	}
	for i := range g.events {
		if g.events[i].active(t, g.rng) {
			r *= g.m.Events[i].Load
		}
	}
	return r
}

// gap is the time from t to the next arrival (exponential at the rate of the moment).
func (g *Generator) gap(t float64) float64 { return g.rng.ExpFloat64() / g.rate(t) }

// Advance generates every request that arrives before until and emits, in the order they finish,
// those that finished before until (a request is logged when its response ends, as proxies do).
func (g *Generator) Advance(until time.Time, emit func(providers.Request)) {
	var buf []providers.Request
	for _, q := range g.AppendUntil(buf, until) {
		emit(q)
	}
}

// AppendUntil is Advance appending the requests to log, which it returns. A full log is replaced by
// one twice its capacity (at least 1,024), never written below its length: slices of the old log
// handed out earlier stay valid. (Filling the log in place instead of through a callback saves a
// copy of every request.)
func (g *Generator) AppendUntil(log []providers.Request, until time.Time) []providers.Request {
	u := until.Sub(g.t0).Seconds()
	g.rtOK = false // the router's answers hold for one call
	for g.next < u {
		t := g.next
		// Requests that finished before this arrival are emitted first: every later request
		// finishes after its arrival, so the order holds, and the queue holds only the requests in
		// flight (a few dozen) even when the log is read once a minute (Kayenta mode), instead of
		// a minute's arrivals.
		log = g.emitBefore(log, t)
		g.arrive(t)
		g.next = t + g.gap(t)
	}
	return g.emitBefore(log, u)
}

// emitBefore appends to log, in the order they finish, the requests in flight that finished before t.
func (g *Generator) emitBefore(log []providers.Request, t float64) []providers.Request {
	for g.pending.len() > 0 && g.pending.first().fin < t {
		p := g.pending.pop()
		n := len(log)
		if n == cap(log) {
			nb := make([]providers.Request, n, max(2*n, 1024))
			copy(nb, log)
			log = nb
		}
		log = log[:n+1]
		q := &log[n]
		*q = providers.Request{Time: g.t0.Add(time.Duration(p.fin * float64(time.Second))), Cohort: cohortOf[p.cohort],
			Instance: g.cohorts[p.cohort].names[p.instance], Client: g.clientName(p.client), Status: int(p.status), Latency: time.Duration(float64(p.latencyMS) * float64(time.Millisecond))}
		if g.routes != nil {
			q.Route = g.routes.names[p.route]
		}
	}
	return log
}

// arrive routes one request arriving at t and computes its latency and status.
func (g *Generator) arrive(t float64) {
	m := &g.m
	rt := g.route(time.Duration(t * float64(time.Second)))
	pc := float64(rt.Split.Canary) / providers.BasisPoints * m.Cohorts.Canary.Share
	pb := float64(rt.Split.Baseline) / providers.BasisPoints * m.Cohorts.Baseline.Share
	if s := pc + pb; s > 1 {
		pc, pb = pc/s, pb/s
	}
	ci, client, latF, errF := g.pick(pc, pb)
	cs := &g.cohorts[ci]
	c := &cs.c
	latF *= c.LatencyFactor
	errF *= c.ErrorFactor
	addErr := 0.0
	if cold := c.ColdStart; cold != nil {
		if left := 1 - (t-cs.deployed)/cold.Duration.Seconds(); left > 0 && t >= cs.deployed {
			latF *= 1 + (cold.LatencyFactor-1)*left
			errF *= 1 + (cold.ErrorFactor-1)*left
		}
	}
	inst := g.rng.IntN(len(cs.instances))
	if c.Episodes != nil {
		if in := &cs.instances[inst]; in.active(t, g.rng) {
			latF *= c.Episodes.LatencyFactor
			errF *= c.Episodes.ErrorFactor
			addErr += c.Episodes.ErrorRate
		}
	}
	for i := range g.events {
		if p := &g.events[i]; p.active(t, g.rng) {
			latF *= p.ep.LatencyFactor
			errF *= p.ep.ErrorFactor
			addErr += p.ep.ErrorRate
		}
	}
	hours := t / 3600
	if d := m.Drift.LatencyPerHour; d != 0 {
		latF *= math.Pow(1+d, hours)
	}
	addErr += m.Drift.ErrorRatePerHour * hours
	route := 0
	if g.routes != nil { // a draw only for models with routes: the others keep their random streams
		route = g.routes.pick(g.rng.Float64())
	}
	base := g.latency()
	pErr := m.ErrorRate*errF + addErr
	lat := base * latF
	if r := &m.Regression; ci == 2 && rt.Step+1 >= r.FromStep && (g.routes == nil || g.routes.broken < 0 || g.routes.broken == route) {
		if r.TailFactor != 1 {
			w := min(max((base-g.q90)/(g.q99-g.q90), 0), 1)
			lat *= 1 + (r.TailFactor-1)*w
		}
		lat = lat*r.LatencyFactor + ms(r.Added)
		if r.ErrorRate > 0 {
			pErr = r.ErrorRate
		} else {
			pErr += r.AddErrorRate
		}
	}
	if m.Latency.IntegerMS {
		lat = math.Round(lat)
	}
	status := 200
	if g.rng.Float64() < pErr {
		status = 500
	}
	g.counts[ci].Requests++
	if status >= 500 {
		g.counts[ci].Errors++
	}
	g.pending.push(pendingReq{fin: t + lat/1000, latencyMS: float32(lat), status: int16(status), cohort: int8(ci),
		instance: uint16(inst), route: uint16(route), client: client})
}

// route is the route in effect d after t0.
func (g *Generator) route(d time.Duration) Route {
	if g.rtOK && d < g.rtUntil {
		return g.rt
	}
	sr, ok := g.router.(SpanRouter)
	if !ok {
		return g.router.Route(g.t0.Add(d))
	}
	rt, next := sr.RouteSpan(g.t0.Add(d))
	g.rt, g.rtOK, g.rtUntil = rt, true, time.Duration(math.MaxInt64)
	if !next.IsZero() {
		g.rtUntil = next.Sub(g.t0)
	}
	return rt
}

// pick draws the request's client (with clients: its latency and error factors, and with sticky
// clients its fixed bucket) and then its cohort from the canary and baseline shares pc and pb:
// 2 canary, 1 baseline, 0 stable. The draws are in this order, one each, as they always were.
func (g *Generator) pick(pc, pb float64) (ci int, client uint32, latF, errF float64) {
	latF, errF = 1.0, 1.0
	u := -1.0
	if p := g.clients; p != nil {
		i, _ := slices.BinarySearch(p.cum, g.rng.Float64())
		i = min(i, len(p.cum)-1)
		client = uint32(i) + 1
		latF, errF = p.lat[i], p.err[i]
		if g.m.Clients.Sticky {
			u = p.bucket[i]
		}
	}
	if u < 0 {
		u = g.rng.Float64()
	}
	switch {
	case u < pc:
		ci = 2
	case u < pc+pb:
		ci = 1
	}
	return ci, client, latF, errF
}

// clientName is the key of client c (1 + its index), "" without clients.
func (g *Generator) clientName(c uint32) string {
	if c == 0 || g.clients == nil {
		return ""
	}
	return g.clients.names[c-1]
}

// latency draws a body-or-tail latency in ms.
func (g *Generator) latency() float64 {
	l := &g.m.Latency
	if t := l.Tail; t != nil && g.rng.Float64() < t.Weight {
		return ms(t.Min) * math.Pow(1-g.rng.Float64(), -1/t.Shape)
	}
	return ms(l.Median) * math.Exp(l.Sigma*g.rng.NormFloat64())
}

// pendingReq is a request in flight, 24 bytes without pointers: moving it in the heap is cheap and
// costs the garbage collector nothing.
type pendingReq struct {
	fin       float64 // seconds since t0
	latencyMS float32 // exact for whole ms; 24 bits of mantissa otherwise (about 10 ns at 100 ms)
	client    uint32  // 1 + the client's index, 0 without clients
	instance  uint16
	route     uint16 // index in the route table (Model.Routes)
	status    int16
	cohort    int8
}

// finishQueue holds the requests in flight sorted by the time they finish, the first at head. A
// request arrives after every request already in the queue, and most finish after most of those in
// flight, so insertion from the back moves few entries; taking the first is O(1). (It replaced a
// binary heap, whose pops were a tenth of the simulator's CPU.)
type finishQueue struct {
	a    []pendingReq
	head int
}

func (q *finishQueue) len() int { return len(q.a) - q.head }

// first is the request that finishes first; the queue must not be empty.
func (q *finishQueue) first() *pendingReq { return &q.a[q.head] }

func (q *finishQueue) push(x pendingReq) {
	if q.head > 0 && len(q.a) == cap(q.a) {
		// Full: move the requests in flight to the front instead of growing.
		n := copy(q.a, q.a[q.head:])
		q.a, q.head = q.a[:n], 0
	}
	q.a = append(q.a, x)
	i := len(q.a) - 1
	for i > q.head && q.a[i-1].fin > x.fin {
		q.a[i] = q.a[i-1]
		i--
	}
	q.a[i] = x
}

func (q *finishQueue) pop() pendingReq {
	x := q.a[q.head]
	q.head++
	if q.head == len(q.a) {
		q.a, q.head = q.a[:0], 0
	}
	return x
}
