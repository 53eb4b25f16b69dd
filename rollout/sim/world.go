package sim

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout/sim/traffic"
)

// virtualClock is the engine's clock in a simulation: After moves time forward by d at once, so
// the engine's own Run loop runs a 15-minute rollout in milliseconds, waking exactly when it asked
// to. Past the limit it cancels the rollout (which then rolls back as on SIGTERM).
type virtualClock struct {
	now    time.Time
	limit  time.Time
	cancel context.CancelFunc
}

func (c *virtualClock) Now() time.Time { return c.now }

func (c *virtualClock) After(d time.Duration) <-chan time.Time {
	c.now = c.now.Add(d)
	if !c.now.Before(c.limit) && c.cancel != nil {
		c.cancel()
		c.cancel = nil
	}
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// routeChange is a split the gateway applied at a virtual time.
type routeChange struct {
	at    time.Time
	route traffic.Route
}

// gateway is the simulated gateway: it applies splits at once (at the virtual time of the call)
// and tells the traffic generator which split was in effect when each request arrived.
type gateway struct {
	clock     *virtualClock
	step      func() int // the engine's current step, read when a split is set
	upstreams map[providers.Cohort][]string
	history   []routeChange
	cur       int // index into history of the last route looked up
}

func newGateway(clock *virtualClock) *gateway {
	return &gateway{clock: clock, upstreams: map[providers.Cohort][]string{},
		history: []routeChange{{at: time.Time{}, route: traffic.Route{Step: -1}}}}
}

func (g *gateway) SetUpstreams(_ context.Context, c providers.Cohort, addrs []string) error {
	g.upstreams[c] = slices.Clone(addrs)
	return nil
}

func (g *gateway) set(s providers.Split) {
	step := g.history[len(g.history)-1].route.Step
	if s != (providers.Split{}) && g.step != nil {
		step = g.step()
	}
	last := &g.history[len(g.history)-1]
	if last.route.Split == s && last.route.Step == step {
		return
	}
	now := g.clock.Now()
	if last.at.Equal(now) {
		last.route = traffic.Route{Split: s, Step: step}
		return
	}
	g.history = append(g.history, routeChange{at: now, route: traffic.Route{Split: s, Step: step}})
}

func (g *gateway) SetSplit(_ context.Context, s providers.Split) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("sim gateway: %w", err)
	}
	if s.Canary > 0 && len(g.upstreams[providers.Canary]) == 0 || s.Baseline > 0 && len(g.upstreams[providers.Baseline]) == 0 {
		return fmt.Errorf("sim gateway: set split %s: %w: a cohort with a share has no upstreams", s, providers.ErrNotFound)
	}
	g.set(s)
	return nil
}

func (g *gateway) Split(context.Context) (providers.Split, error) {
	return g.history[len(g.history)-1].route.Split, nil
}

func (g *gateway) Rollback(context.Context) error {
	delete(g.upstreams, providers.Canary)
	delete(g.upstreams, providers.Baseline)
	g.set(providers.Split{})
	return nil
}

func (g *gateway) Promote(context.Context) error {
	g.upstreams[providers.Stable] = g.upstreams[providers.Canary]
	delete(g.upstreams, providers.Canary)
	delete(g.upstreams, providers.Baseline)
	g.set(providers.Split{})
	return nil
}

// Route is the route in effect at t (traffic.Router); t does not decrease between calls.
func (g *gateway) Route(t time.Time) traffic.Route {
	for g.cur+1 < len(g.history) && !t.Before(g.history[g.cur+1].at) {
		g.cur++
	}
	return g.history[g.cur].route
}

// RouteSpan is Route and when the route next changes, as far as the history goes (traffic.SpanRouter;
// the zero time: no later change yet). Splits are set at the virtual now, never before a request
// already generated, so the answer holds until the generator is next asked for requests.
func (g *gateway) RouteSpan(t time.Time) (traffic.Route, time.Time) {
	r := g.Route(t)
	if g.cur+1 < len(g.history) {
		return r, g.history[g.cur+1].at
	}
	return r, time.Time{}
}

// onset is when the route first reached step (0-based), if it did.
func (g *gateway) onset(step int) (time.Time, bool) {
	for _, h := range g.history {
		if h.route.Step >= step && h.route.Split != (providers.Split{}) {
			return h.at, true
		}
	}
	return time.Time{}, false
}

// deployer starts the baseline and canary at once; their cold start begins then.
type deployer struct {
	clock *virtualClock
	gen   *traffic.Generator
}

func (d *deployer) Deploy(_ context.Context, c providers.Cohort) ([]string, error) {
	d.gen.Deployed(c, d.clock.Now())
	return []string{"http://" + string(c) + ".sim:80"}, nil
}

func (d *deployer) Teardown(context.Context, providers.Cohort) error { return nil }

// requestLog is the gateway's request log: requests are generated up to the time asked for (never
// beyond the virtual now) and kept while they may still be asked for.
type requestLog struct {
	clock *virtualClock
	gen   *traffic.Generator
	reqs  []providers.Request // sorted by Time
	// from: requests before it were dropped; a later call asking for them is a simulator error.
	from time.Time
	err  error
}

func newRequestLog(clock *virtualClock, gen *traffic.Generator) *requestLog {
	// The generator grows the log by doubling, not append's 1.25x for large slices: in mode
	// kayenta the log holds a whole step (60,000 requests at 200 req/s), and copying it at every
	// quarter of growth was a twentieth of the simulator's CPU. Slices handed out stay valid: the
	// old buffer is left as it is.
	return &requestLog{clock: clock, gen: gen}
}

// Requests returns the requests that finished in [since, until), as the built-in proxy's log does.
// Callers must not modify the returned slice; it stays valid after later calls.
func (l *requestLog) Requests(_ context.Context, since, until time.Time) ([]providers.Request, error) {
	if now := l.clock.Now(); until.After(now) {
		until = now
	}
	if since.Before(l.from) {
		l.err = fmt.Errorf("sim request log: asked for requests since %s, but those before %s were dropped (windows must not move back)",
			since.Format(time.RFC3339Nano), l.from.Format(time.RFC3339Nano))
		return nil, l.err
	}
	l.reqs = l.gen.AppendUntil(l.reqs, until)
	// Requests before since are never asked for again: drop them (windows move forward only).
	// Slices handed out earlier stay valid: the buffer is never written below its length, and a
	// mostly dead buffer is replaced, not compacted in place.
	if drop := sort.Search(len(l.reqs), func(i int) bool { return !l.reqs[i].Time.Before(since) }); drop > 0 {
		if live := len(l.reqs) - drop; drop > cap(l.reqs)/2 {
			nb := make([]providers.Request, live, max(2*live, cap(l.reqs), 1024)) // the window's size is steady
			copy(nb, l.reqs[drop:])
			l.reqs = nb
		} else {
			l.reqs = l.reqs[drop:]
		}
	}
	if since.After(l.from) {
		l.from = since
	}
	end := sort.Search(len(l.reqs), func(i int) bool { return !l.reqs[i].Time.Before(until) })
	return l.reqs[:end:end], nil
}
