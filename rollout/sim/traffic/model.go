// Package traffic models the requests a service receives during a canary rollout the way an SRE
// describes them: a request rate that follows the day and bursts, a latency distribution with a
// heavy tail, a background 5xx rate, and the things that make production traffic unlike a textbook
// sample — cohorts of different size and age (cold starts, fresh instances erroring more than warm
// stable ones), a few instances per cohort each with its own bad moments, sticky clients that differ
// from each other, events that hit every cohort at once, drift — plus the regression a bad canary
// brings. A Generator turns a Model into the gateway's request log (providers.Request), routed by the
// split the gateway has at each moment. It is pure: no I/O, no clock, seeded.
package traffic

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Model is the traffic of one service during one rollout. Zero values mean "absent" (no diurnal
// cycle, no events, no regression); Rate.RPS and Latency.Median are required.
type Model struct {
	Rate    Rate    `yaml:"rate" json:"rate"`
	Latency Latency `yaml:"latency" json:"latency"`
	// ErrorRate is the background 5xx probability of a request to a warm stable instance.
	ErrorRate float64 `yaml:"errorRate" json:"errorRate"`
	// Cohorts: per-cohort size, share and age. Fields left out take the defaults of Cohort.
	Cohorts Cohorts `yaml:"cohorts" json:"cohorts"`
	// Clients: when set, requests come from a population of clients that differ in rate, latency
	// and errors; with Sticky the gateway routes each client to one cohort (hash-on a user key).
	Clients *Clients `yaml:"clients,omitempty" json:"clients,omitempty"`
	// Events hit every cohort at the same time (a dependency slows down, a database errors, load
	// bursts).
	Events []Event `yaml:"events,omitempty" json:"events,omitempty"`
	// Drift changes the service for every cohort as the rollout goes on (a dependency degrading).
	Drift Drift `yaml:"drift" json:"drift"`
	// Regression is what the canary does worse; zero for a good canary (A/A).
	Regression Regression `yaml:"regression" json:"regression"`
	// Routes: the service's routes and their shares of the requests (routes.go); left out, requests
	// name no route (as a source that does not record routes).
	Routes []RouteShare `yaml:"routes,omitempty" json:"routes,omitempty"`
}

// Rate is the request rate of all cohorts together.
type Rate struct {
	// RPS is the mean request rate in requests per second.
	RPS float64 `yaml:"rps" json:"rps"`
	// Diurnal is a daily cycle: the rate is RPS·(1 + Amplitude·sin(2π(t+φ)/Period)) with a random phase
	// φ per rollout (Period defaults to 24h).
	Diurnal Diurnal `yaml:"diurnal" json:"diurnal"`
}

// Diurnal is a sinusoidal load cycle.
type Diurnal struct {
	Amplitude float64       `yaml:"amplitude" json:"amplitude"` // in [0, 1)
	Period    time.Duration `yaml:"period" json:"period"`
}

// Latency is a log-normal body mixed with a Pareto tail.
type Latency struct {
	// Median and Sigma of the log-normal body (Sigma is the standard deviation of the log; default 0.45).
	Median time.Duration `yaml:"median" json:"median"`
	Sigma  float64       `yaml:"sigma" json:"sigma"`
	// Tail: a share of requests drawn from a Pareto distribution instead (slow paths, GC, retries).
	Tail *Tail `yaml:"tail,omitempty" json:"tail,omitempty"`
	// IntegerMS rounds every latency to whole milliseconds, as Kong's log and many proxies record it
	// (ties between canary and baseline requests become common at low latencies).
	IntegerMS bool `yaml:"integerMs" json:"integerMs"`
}

// Tail is the Pareto tail of the latency distribution.
type Tail struct {
	Weight float64       `yaml:"weight" json:"weight"` // share of requests in the tail, [0, 1)
	Min    time.Duration `yaml:"min" json:"min"`       // the Pareto scale: the tail starts here
	Shape  float64       `yaml:"shape" json:"shape"`   // the Pareto index (> 1: finite mean)
}

// Cohorts configures stable, baseline and canary.
type Cohorts struct {
	Stable   Cohort `yaml:"stable" json:"stable"`
	Baseline Cohort `yaml:"baseline" json:"baseline"`
	Canary   Cohort `yaml:"canary" json:"canary"`
}

// Cohort is one cohort's size, traffic share and age.
type Cohort struct {
	// Instances serving the cohort (default: stable 10, baseline and canary 2). Requests are spread
	// over them at random; each has its own Episodes.
	Instances int `yaml:"instances" json:"instances"`
	// Share multiplies the share the gateway gives the cohort (default 1): 1.25 for a baseline that
	// receives 1.25 times its configured share (uneven load balancing, more connections, a slower
	// canary receiving fewer requests under least-connections).
	Share float64 `yaml:"share" json:"share"`
	// ErrorFactor multiplies the background error rate for this cohort (default 1): fresh instances
	// often error more than warm stable ones (empty caches, connection pools still filling).
	ErrorFactor float64 `yaml:"errorFactor" json:"errorFactor"`
	// LatencyFactor multiplies the cohort's latencies (default 1).
	LatencyFactor float64 `yaml:"latencyFactor" json:"latencyFactor"`
	// ColdStart: right after deployment the cohort is slower and errors more, fading linearly to
	// normal over Duration.
	ColdStart *ColdStart `yaml:"coldStart,omitempty" json:"coldStart,omitempty"`
	// Episodes hit one instance at a time: each instance on its own has a bad moment on average
	// every Every (a GC storm, a noisy neighbour, a failing disk).
	Episodes *Episode `yaml:"episodes,omitempty" json:"episodes,omitempty"`
}

// ColdStart is the warm-up of freshly deployed instances.
type ColdStart struct {
	Duration      time.Duration `yaml:"duration" json:"duration"`
	ErrorFactor   float64       `yaml:"errorFactor" json:"errorFactor"`     // at deployment, fading to 1
	LatencyFactor float64       `yaml:"latencyFactor" json:"latencyFactor"` // at deployment, fading to 1
}

// Episode is a recurring bad moment: starts come on average Every apart (exponential gaps between
// the end of one and the start of the next, so the process is memoryless), each lasts Duration, or
// a uniform time between Duration and DurationMax.
type Episode struct {
	Every       time.Duration `yaml:"every" json:"every"`
	Duration    time.Duration `yaml:"duration" json:"duration"`
	DurationMax time.Duration `yaml:"durationMax" json:"durationMax"`
	// LatencyFactor multiplies latencies during the episode (default 1).
	LatencyFactor float64 `yaml:"latencyFactor" json:"latencyFactor"`
	// ErrorRate is added to the 5xx probability during the episode.
	ErrorRate float64 `yaml:"errorRate" json:"errorRate"`
	// ErrorFactor multiplies the background error rate during the episode (default 1).
	ErrorFactor float64 `yaml:"errorFactor" json:"errorFactor"`
}

// Event is an episode shared by every cohort, with an optional load change.
type Event struct {
	Name    string `yaml:"name" json:"name"`
	Episode `yaml:",inline" json:",inline"`
	// Load multiplies the request rate during the event (default 1; 2.5 for a traffic burst).
	Load float64 `yaml:"load" json:"load"`
}

// Clients is the population requests come from.
type Clients struct {
	Count int `yaml:"count" json:"count"`
	// Sticky routes each client to one cohort, as hash-on a user key does (the built-in proxy's
	// --hash-on, Kong's hash mode): the cohorts then serve different populations.
	Sticky bool `yaml:"sticky" json:"sticky"`
	// Heterogeneity: the log-standard deviations of a client's request rate, latency factor and
	// error factor (each log-normal; the error factor has mean 1, the latency factor median 1).
	Heterogeneity Heterogeneity `yaml:"heterogeneity" json:"heterogeneity"`
}

// Heterogeneity is how different clients are from each other.
type Heterogeneity struct {
	Rate    float64 `yaml:"rate" json:"rate"`
	Latency float64 `yaml:"latency" json:"latency"`
	Errors  float64 `yaml:"errors" json:"errors"`
}

// Drift is a slow change of every cohort over the rollout.
type Drift struct {
	// LatencyPerHour: latencies grow by this fraction per hour (0.1: +10% after an hour, compounding).
	LatencyPerHour float64 `yaml:"latencyPerHour" json:"latencyPerHour"`
	// ErrorRatePerHour: added to the 5xx probability per hour (0.001: +0.1 pp after an hour).
	ErrorRatePerHour float64 `yaml:"errorRatePerHour" json:"errorRatePerHour"`
}

// Regression is what a bad canary does worse, from its FromStep-th step on (1-based; 0 or 1: from
// the first step).
type Regression struct {
	FromStep int `yaml:"fromStep" json:"fromStep"`
	// LatencyFactor multiplies the canary's latencies (default 1); Added is added to each.
	LatencyFactor float64       `yaml:"latencyFactor" json:"latencyFactor"`
	Added         time.Duration `yaml:"added" json:"added"`
	// TailFactor stretches the canary's latencies above the body's P90 smoothly up to this factor at the
	// P99 and above, leaving the median alone (1.5: the P99 is 50% higher).
	TailFactor float64 `yaml:"tailFactor" json:"tailFactor"`
	// AddErrorRate is added to the canary's 5xx probability; ErrorRate, when positive, replaces it.
	AddErrorRate float64 `yaml:"addErrorRate" json:"addErrorRate"`
	ErrorRate    float64 `yaml:"errorRate" json:"errorRate"`
	// Route confines the regression to the canary's requests on this route (a name in Routes);
	// "" for every route.
	Route string `yaml:"route,omitempty" json:"route,omitempty"`
}

// Active reports whether the regression changes anything.
func (r Regression) Active() bool {
	return r.LatencyFactor != 0 && r.LatencyFactor != 1 || r.Added != 0 || r.TailFactor != 0 && r.TailFactor != 1 ||
		r.AddErrorRate != 0 || r.ErrorRate != 0
}

// WithDefaults returns the model with every left-out field at its default.
func (m Model) WithDefaults() Model {
	if m.Rate.Diurnal.Period == 0 {
		m.Rate.Diurnal.Period = 24 * time.Hour
	}
	if m.Latency.Sigma == 0 {
		m.Latency.Sigma = 0.45
	}
	one := func(v *float64) {
		if *v == 0 {
			*v = 1
		}
	}
	cohort := func(c *Cohort, instances int) {
		if c.Instances == 0 {
			c.Instances = instances
		}
		one(&c.Share)
		one(&c.ErrorFactor)
		one(&c.LatencyFactor)
		if cs := c.ColdStart; cs != nil {
			cp := *cs
			one(&cp.ErrorFactor)
			one(&cp.LatencyFactor)
			c.ColdStart = &cp
		}
		if e := c.Episodes; e != nil {
			cp := *e
			one(&cp.LatencyFactor)
			one(&cp.ErrorFactor)
			c.Episodes = &cp
		}
	}
	cohort(&m.Cohorts.Stable, 10)
	cohort(&m.Cohorts.Baseline, 2)
	cohort(&m.Cohorts.Canary, 2)
	evs := make([]Event, len(m.Events))
	for i, e := range m.Events {
		one(&e.LatencyFactor)
		one(&e.ErrorFactor)
		one(&e.Load)
		evs[i] = e
	}
	m.Events = evs
	one(&m.Regression.LatencyFactor)
	one(&m.Regression.TailFactor)
	return m
}

// Validate checks a model (after WithDefaults) and names the field and the fix of the first problem.
func (m Model) Validate() error {
	c := &checks{}
	for _, part := range []func(*checks){m.checkRate, m.checkLatency, m.checkCohorts, m.checkClients, m.checkEvents, m.checkRegression, m.checkRoutes} {
		part(c)
	}
	return errors.Join(c.errs...)
}

// checks collects a model's problems, one error per field, in the order they are checked.
type checks struct{ errs []error }

func (c *checks) bad(field, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func (c *checks) pos(field string, v float64, eg string) {
	if !(v > 0) || math.IsNaN(v) || math.IsInf(v, 0) {
		c.bad(field, "%v must be a positive number, e.g. %s", v, eg)
	}
}

func (c *checks) prob(field string, v float64, eg string) {
	if !(v >= 0 && v < 1) {
		c.bad(field, "%v must be a probability in [0, 1), e.g. %s", v, eg)
	}
}

func (c *checks) positiveDuration(field string, d time.Duration, eg string) {
	if d <= 0 {
		c.bad(field, "%s must be positive, e.g. %s", d, eg)
	}
}

func (m Model) checkRate(c *checks) {
	c.pos("rate.rps", m.Rate.RPS, "200")
	if m.Rate.RPS > 1e6 {
		c.bad("rate.rps", "%v is more than the simulator handles (at most 1000000)", m.Rate.RPS)
	}
	if a := m.Rate.Diurnal.Amplitude; !(a >= 0 && a < 1) {
		c.bad("rate.diurnal.amplitude", "%v must be in [0, 1), e.g. 0.3 for ±30%%", a)
	}
	c.positiveDuration("rate.diurnal.period", m.Rate.Diurnal.Period, "24h")
}

func (m Model) checkLatency(c *checks) {
	c.positiveDuration("latency.median", m.Latency.Median, "80ms")
	c.pos("latency.sigma", m.Latency.Sigma, "0.45")
	if t := m.Latency.Tail; t != nil {
		c.prob("latency.tail.weight", t.Weight, "0.03")
		c.positiveDuration("latency.tail.min", t.Min, "150ms")
		if !(t.Shape > 1) || math.IsNaN(t.Shape) || math.IsInf(t.Shape, 0) {
			c.bad("latency.tail.shape", "%v must be above 1 (a finite mean), e.g. 2.5", t.Shape)
		}
	}
	c.prob("errorRate", m.ErrorRate, "0.005")
}

func (m Model) checkCohorts(c *checks) {
	for _, co := range []struct {
		name string
		c    Cohort
	}{{"cohorts.stable", m.Cohorts.Stable}, {"cohorts.baseline", m.Cohorts.Baseline}, {"cohorts.canary", m.Cohorts.Canary}} {
		if co.c.Instances < 1 || co.c.Instances > 10000 {
			c.bad(co.name+".instances", "%d must be between 1 and 10000", co.c.Instances)
		}
		c.pos(co.name+".share", co.c.Share, "1.25")
		c.pos(co.name+".errorFactor", co.c.ErrorFactor, "3")
		c.pos(co.name+".latencyFactor", co.c.LatencyFactor, "1.2")
		if cs := co.c.ColdStart; cs != nil {
			c.positiveDuration(co.name+".coldStart.duration", cs.Duration, "2m")
			c.pos(co.name+".coldStart.errorFactor", cs.ErrorFactor, "5")
			c.pos(co.name+".coldStart.latencyFactor", cs.LatencyFactor, "1.5")
		}
		if e := co.c.Episodes; e != nil {
			e.validate(co.name+".episodes", c)
		}
	}
}

func (m Model) checkClients(c *checks) {
	cl := m.Clients
	if cl == nil {
		return
	}
	if cl.Count < 1 || cl.Count > 1_000_000 {
		c.bad("clients.count", "%d must be between 1 and 1000000, e.g. 500", cl.Count)
	}
	h := cl.Heterogeneity
	for _, f := range []struct {
		name string
		v    float64
	}{{"rate", h.Rate}, {"latency", h.Latency}, {"errors", h.Errors}} {
		if !(f.v >= 0 && f.v <= 5) {
			c.bad("clients.heterogeneity."+f.name, "%v must be a log-standard deviation in [0, 5], e.g. 1", f.v)
		}
	}
}

func (m Model) checkEvents(c *checks) {
	for i, e := range m.Events {
		p := fmt.Sprintf("events[%d]", i)
		e.validate(p, c)
		c.pos(p+".load", e.Load, "2.5")
	}
	if d := m.Drift.LatencyPerHour; !(d > -1 && d <= 100) {
		c.bad("drift.latencyPerHour", "%v must be in (-1, 100], e.g. 0.1 for +10%% per hour", d)
	}
	if d := m.Drift.ErrorRatePerHour; !(d >= 0 && d < 1) {
		c.bad("drift.errorRatePerHour", "%v must be in [0, 1), e.g. 0.001 for +0.1 pp per hour", d)
	}
}

func (m Model) checkRegression(c *checks) {
	r := m.Regression
	if r.FromStep < 0 {
		c.bad("regression.fromStep", "%d must be a step number (1 is the first step)", r.FromStep)
	}
	c.pos("regression.latencyFactor", r.LatencyFactor, "1.2")
	c.pos("regression.tailFactor", r.TailFactor, "1.5")
	if r.Added < 0 {
		c.bad("regression.added", "%s must not be negative, e.g. 20ms", r.Added)
	}
	c.prob("regression.addErrorRate", r.AddErrorRate, "0.01")
	c.prob("regression.errorRate", r.ErrorRate, "0.1")
}

func (e Episode) validate(p string, c *checks) {
	c.positiveDuration(p+".every", e.Every, "12m")
	c.positiveDuration(p+".duration", e.Duration, "15s")
	if e.DurationMax != 0 && e.DurationMax < e.Duration {
		c.bad(p+".durationMax", "%s is shorter than duration %s; leave it out or make it longer", e.DurationMax, e.Duration)
	}
	c.pos(p+".latencyFactor", e.LatencyFactor, "1.5")
	c.pos(p+".errorFactor", e.ErrorFactor, "3")
	c.prob(p+".errorRate", e.ErrorRate, "0.2")
}

// LatencyCDF is the distribution function of the body-and-tail latency in ms (no factors).
func (l Latency) LatencyCDF(x float64) float64 {
	if x <= 0 {
		return 0
	}
	med := ms(l.Median)
	body := 0.5 * math.Erfc(-math.Log(x/med)/(l.Sigma*math.Sqrt2))
	if l.Tail == nil {
		return body
	}
	tail, tmin := 0.0, ms(l.Tail.Min)
	if x > tmin {
		tail = 1 - math.Pow(tmin/x, l.Tail.Shape)
	}
	return (1-l.Tail.Weight)*body + l.Tail.Weight*tail
}

// Quantile inverts LatencyCDF by bisection (ms).
func (l Latency) Quantile(p float64) float64 {
	lo, hi := 0.0, ms(l.Median)
	for l.LatencyCDF(hi) < p {
		hi *= 2
	}
	for range 100 {
		mid := (lo + hi) / 2
		if l.LatencyCDF(mid) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
