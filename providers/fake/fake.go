// Package fake holds in-memory fakes of a gateway, a metrics source, a deployer and a clock for
// tests of the rollout engine, with fault injection. They satisfy rollout's interfaces structurally
// and are safe for concurrent use.
package fake

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// ErrInjected is the error a fake returns when a fault was injected.
var ErrInjected = errors.New("injected fault")

// Faults counts the calls of one method that will fail: the next N calls return Err (ErrInjected
// when nil).
type Faults struct {
	mu  sync.Mutex
	n   map[string]int
	err map[string]error
}

// Fail makes the next n calls of method fail with err (ErrInjected when err is nil).
func (f *Faults) Fail(method string, n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n, f.err = map[string]int{}, map[string]error{}
	}
	f.n[method] = n
	f.err[method] = err
}

func (f *Faults) take(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[method] <= 0 {
		return nil
	}
	f.n[method]--
	if err := f.err[method]; err != nil {
		return fmt.Errorf("fake %s: %w", method, err)
	}
	return fmt.Errorf("fake %s: %w", method, ErrInjected)
}

// Gateway is an in-memory gateway: upstreams per cohort and a split. Calls are recorded. Every
// method fails when its context is done, so a test sees whether a rollback ignored cancellation.
type Gateway struct {
	Faults
	mu        sync.Mutex
	upstreams map[providers.Cohort][]string
	split     providers.Split
	calls     []string
	// SplitHistory records every split that was set, in order.
	splitHistory []providers.Split
}

// NewGateway returns a gateway with no upstreams and the split at zero.
func NewGateway() *Gateway {
	return &Gateway{upstreams: map[providers.Cohort][]string{}}
}

func (g *Gateway) record(call string) {
	g.mu.Lock()
	g.calls = append(g.calls, call)
	g.mu.Unlock()
}

// SetUpstreams replaces a cohort's upstreams.
func (g *Gateway) SetUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error {
	g.record("SetUpstreams " + string(c))
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake SetUpstreams: %w", err)
	}
	if err := g.take("SetUpstreams"); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.upstreams[c] = slices.Clone(addrs)
	return nil
}

// SetSplit sets the split; a cohort with a share must have upstreams.
func (g *Gateway) SetSplit(ctx context.Context, s providers.Split) error {
	g.record(fmt.Sprintf("SetSplit %d/%d", s.Canary, s.Baseline))
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake SetSplit: %w", err)
	}
	if err := g.take("SetSplit"); err != nil {
		return err
	}
	if err := s.Validate(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.Canary > 0 && len(g.upstreams[providers.Canary]) == 0 || s.Baseline > 0 && len(g.upstreams[providers.Baseline]) == 0 {
		return fmt.Errorf("fake SetSplit %s: %w: a cohort with a share has no upstreams", s, providers.ErrNotFound)
	}
	g.split = s
	g.splitHistory = append(g.splitHistory, s)
	return nil
}

// Split returns the current split.
func (g *Gateway) Split(ctx context.Context) (providers.Split, error) {
	g.record("Split")
	if err := ctx.Err(); err != nil {
		return providers.Split{}, fmt.Errorf("fake Split: %w", err)
	}
	if err := g.take("Split"); err != nil {
		return providers.Split{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.split, nil
}

// Rollback deletes canary and baseline upstreams; all traffic on stable.
func (g *Gateway) Rollback(ctx context.Context) error {
	g.record("Rollback")
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake Rollback: %w", err)
	}
	if err := g.take("Rollback"); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.upstreams, providers.Canary)
	delete(g.upstreams, providers.Baseline)
	g.split = providers.Split{}
	g.splitHistory = append(g.splitHistory, g.split)
	return nil
}

// Promote makes canary's upstreams stable's and deletes canary and baseline.
func (g *Gateway) Promote(ctx context.Context) error {
	g.record("Promote")
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake Promote: %w", err)
	}
	if err := g.take("Promote"); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.upstreams[providers.Canary]) == 0 {
		return fmt.Errorf("fake Promote: canary: %w", providers.ErrNotFound)
	}
	g.upstreams[providers.Stable] = g.upstreams[providers.Canary]
	delete(g.upstreams, providers.Canary)
	delete(g.upstreams, providers.Baseline)
	g.split = providers.Split{}
	g.splitHistory = append(g.splitHistory, g.split)
	return nil
}

// Reset forgets upstreams and split, as an embedded proxy restarted after a crash would.
func (g *Gateway) Reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.upstreams = map[providers.Cohort][]string{}
	g.split = providers.Split{}
}

// Upstreams returns a cohort's upstreams.
func (g *Gateway) Upstreams(c providers.Cohort) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.upstreams[c])
}

// Current returns the split without recording a call.
func (g *Gateway) Current() providers.Split {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.split
}

// Calls returns the calls made so far ("SetSplit 250/250", "Rollback", ...).
func (g *Gateway) Calls() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

// Count returns how many calls started with prefix.
func (g *Gateway) Count(prefix string) int {
	n := 0
	for _, c := range g.Calls() {
		if len(c) >= len(prefix) && c[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}

// SplitHistory returns every split set, in order.
func (g *Gateway) SplitHistory() []providers.Split {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.splitHistory)
}

// SeriesFunc produces one metric's values for a window.
type SeriesFunc func(m providers.Metric, w providers.Window) (providers.Pair, error)

// Metrics is a programmable metrics source. By default both cohorts get the same values (a good
// canary); Set replaces the function.
type Metrics struct {
	Faults
	mu    sync.Mutex
	fn    SeriesFunc
	calls int
}

// NewMetrics returns a source where canary equals baseline for every metric.
func NewMetrics() *Metrics { return &Metrics{fn: Same(10)} }

// Set replaces the series function.
func (m *Metrics) Set(fn SeriesFunc) {
	m.mu.Lock()
	m.fn = fn
	m.mu.Unlock()
}

// Pair returns the series of fn, or an injected fault.
func (m *Metrics) Pair(_ context.Context, metric providers.Metric, w providers.Window) (providers.Pair, error) {
	m.mu.Lock()
	m.calls++
	fn := m.fn
	m.mu.Unlock()
	if err := m.take("Pair"); err != nil {
		return providers.Pair{}, err
	}
	return fn(metric, w)
}

// Calls returns how many times Pair was called.
func (m *Metrics) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// Same gives n points per cohort with identical, varied values (canary == baseline).
func Same(n int) SeriesFunc {
	return func(providers.Metric, providers.Window) (providers.Pair, error) {
		b := ramp(n, 100, 1)
		return providers.Pair{Baseline: b, Canary: slices.Clone(b)}, nil
	}
}

// Worse gives the canary values factor times the baseline's for metric name (others equal).
func Worse(n int, name string, factor float64) SeriesFunc {
	return func(m providers.Metric, _ providers.Window) (providers.Pair, error) {
		b := ramp(n, 100, 1)
		c := slices.Clone(b)
		if m.Name == name {
			for i := range c {
				c[i] *= factor
			}
		}
		return providers.Pair{Baseline: b, Canary: c}, nil
	}
}

// Empty gives series of NaN (no data).
func Empty(n int) SeriesFunc {
	return func(providers.Metric, providers.Window) (providers.Pair, error) {
		b := make([]float64, n)
		for i := range b {
			b[i] = math.NaN()
		}
		return providers.Pair{Baseline: b, Canary: slices.Clone(b)}, nil
	}
}

func ramp(n int, base, step float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = base + step*float64(i%7)
	}
	return v
}

// Deployer is an in-memory deployer: Deploy returns fixed addresses per cohort.
type Deployer struct {
	Faults
	mu       sync.Mutex
	addrs    map[providers.Cohort][]string
	deployed map[providers.Cohort]bool
	calls    []string
}

// NewDeployer returns a deployer that "deploys" baseline and canary at fixed loopback addresses.
func NewDeployer() *Deployer {
	return &Deployer{
		addrs: map[providers.Cohort][]string{
			providers.Baseline: {"http://127.0.0.1:18001"},
			providers.Canary:   {"http://127.0.0.1:18002"},
		},
		deployed: map[providers.Cohort]bool{},
	}
}

// Deploy marks c deployed and returns its addresses.
func (d *Deployer) Deploy(_ context.Context, c providers.Cohort) ([]string, error) {
	d.mu.Lock()
	d.calls = append(d.calls, "Deploy "+string(c))
	d.mu.Unlock()
	if err := d.take("Deploy"); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.addrs[c]
	if !ok {
		return nil, fmt.Errorf("fake Deploy %s: no target", c)
	}
	d.deployed[c] = true
	return slices.Clone(a), nil
}

// Teardown marks c torn down (idempotent).
func (d *Deployer) Teardown(_ context.Context, c providers.Cohort) error {
	d.mu.Lock()
	d.calls = append(d.calls, "Teardown "+string(c))
	d.mu.Unlock()
	if err := d.take("Teardown"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deployed[c] = false
	return nil
}

// Deployed reports whether c is deployed.
func (d *Deployer) Deployed(c providers.Cohort) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deployed[c]
}

// Calls returns the calls made so far.
func (d *Deployer) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// Clock is a manual clock. After returns a channel that fires when Advance passes its deadline; with
// Auto set, After fires at once and moves the clock forward by d (so loops run without waiting).
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	auto    bool
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// SetAuto makes After advance the clock itself.
func (c *Clock) SetAuto(auto bool) {
	c.mu.Lock()
	c.auto = auto
	c.mu.Unlock()
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the time once the clock reaches now+d.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	if c.auto {
		c.now = c.now.Add(d)
		ch <- c.now
		c.mu.Unlock()
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	c.mu.Unlock()
	c.fire()
	return ch
}

// Advance moves the clock forward by d and fires the channels that are due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	c.fire()
}

func (c *Clock) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}
