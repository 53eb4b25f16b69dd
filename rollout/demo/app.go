// Package demo is the demo of `canaryctl demo`: a small HTTP service whose canary can be made slow
// or erroneous, and a bounded loopback load generator that counts what clients saw.
package demo

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Behaviour is how a demo service instance misbehaves.
type Behaviour string

// The behaviours, one per demo scenario.
const (
	Good   Behaviour = "good"   // answers 200 after the base latency
	Slow   Behaviour = "slow"   // answers 200, SlowBy later than good on every request
	Errors Behaviour = "errors" // answers ErrorShare of requests with 500
	// Route answers BrokenRouteShare of the requests to BrokenRoute with 500, every other request
	// as good: one broken endpoint with a small share of the traffic (analysis.routes).
	Route Behaviour = "route"
)

// The broken endpoint of behaviour Route: the load generator sends LoadRouteShare of its requests
// there, and the Route canary fails half of them.
const (
	BrokenRoute      = "/checkout/pay"
	BrokenRouteShare = 0.5
)

// Behaviours lists the valid behaviours.
var Behaviours = []Behaviour{Good, Slow, Errors, Route}

// ParseBehaviour parses a behaviour name; the error lists the valid ones.
func ParseBehaviour(s string) (Behaviour, error) {
	for _, b := range Behaviours {
		if string(b) == s {
			return b, nil
		}
	}
	return "", fmt.Errorf("unknown behaviour %q; use good, slow, errors or route", s)
}

// Defaults of the demo service: answers take 10 ms plus a log-normal extra with a median of 5 ms
// and a spread (sigma) of 0.75 — a median of 15 ms and a P99 of about 39 ms, the long tail of a real
// service (P99 about 2.5 times the median). With a thin tail (before: uniform 10–20 ms, P99 19.9 ms
// at the very edge of the distribution) the P99 is set by the machine instead: on a loaded machine
// a process that waits 20 ms for a CPU pushes every request it holds past it, and such a burst in
// the canary's process alone rolled a good canary back on latency-tail.
const (
	DefaultLatency    = 10 * time.Millisecond // fastest answer
	DefaultJitter     = 5 * time.Millisecond  // median of the log-normal extra latency on top
	DefaultSpread     = 0.75                  // sigma of the log-normal extra latency
	DefaultSlowBy     = 50 * time.Millisecond
	DefaultErrorShare = 0.10
	// maxExtra bounds the extra latency to this many times Jitter (beyond the 99.99th percentile).
	maxExtra = 20
)

// VersionHeader carries the version that answered, so clients can tell the canary's answers apart.
const VersionHeader = "X-Demo-Version"

// AppConfig configures the demo service.
type AppConfig struct {
	Version   string    // e.g. v1, v2
	Behaviour Behaviour // default Good
	Latency   time.Duration
	// Jitter is the median of the extra latency on top of Latency, drawn from a log-normal
	// distribution with sigma Spread and bounded to 20 times Jitter.
	Jitter     time.Duration
	Spread     float64
	SlowBy     time.Duration
	ErrorShare float64 // 0..1
	Seed       uint64  // of the latency and error draws
	// Sleep waits for the latency of a request; default: a timer that gives up when the client does.
	Sleep func(r *http.Request, d time.Duration)
}

func (c *AppConfig) setDefaults() {
	if c.Behaviour == "" {
		c.Behaviour = Good
	}
	if c.Latency == 0 {
		c.Latency = DefaultLatency
	}
	if c.Jitter == 0 {
		c.Jitter = DefaultJitter
	}
	if c.Spread == 0 {
		c.Spread = DefaultSpread
	}
	if c.SlowBy == 0 {
		c.SlowBy = DefaultSlowBy
	}
	if c.ErrorShare == 0 {
		c.ErrorShare = DefaultErrorShare
	}
	if c.Sleep == nil {
		c.Sleep = func(r *http.Request, d time.Duration) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
			}
		}
	}
}

// App is the demo service: GET /healthz answers 200 at once; any other path answers after the base
// latency plus jitter (plus SlowBy when slow), with 500 for ErrorShare of requests when erroneous,
// and for half the requests to /checkout/pay with behaviour route.
type App struct {
	cfg AppConfig
	mu  sync.Mutex
	rnd *rand.Rand
}

// NewApp returns the demo service.
func NewApp(cfg AppConfig) (*App, error) {
	cfg.setDefaults()
	if _, err := ParseBehaviour(string(cfg.Behaviour)); err != nil {
		return nil, err
	}
	if cfg.ErrorShare < 0 || cfg.ErrorShare > 1 {
		return nil, fmt.Errorf("error share %v must be between 0 and 1", cfg.ErrorShare)
	}
	if cfg.Latency < 0 || cfg.Jitter < 0 || cfg.SlowBy < 0 || cfg.Spread < 0 {
		return nil, fmt.Errorf("latency, jitter, spread and slow-by must not be negative")
	}
	return &App{cfg: cfg, rnd: rand.New(rand.NewPCG(cfg.Seed, 0x64656d6f))}, nil
}

// draw returns the latency of the next request to path and whether it fails.
func (a *App) draw(path string) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.cfg.Latency
	if a.cfg.Jitter > 0 {
		extra := math.Min(math.Exp(a.cfg.Spread*a.rnd.NormFloat64()), maxExtra)
		d += time.Duration(extra * float64(a.cfg.Jitter))
	}
	fail := false
	switch a.cfg.Behaviour {
	case Slow:
		d += a.cfg.SlowBy
	case Errors:
		fail = a.rnd.Float64() < a.cfg.ErrorShare
	case Route:
		fail = path == BrokenRoute && a.rnd.Float64() < BrokenRouteShare
	}
	return d, fail
}

func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(VersionHeader, a.cfg.Version)
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/healthz" {
		fmt.Fprintf(w, "{\"status\":\"ok\",\"version\":%q}\n", a.cfg.Version)
		return
	}
	d, fail := a.draw(r.URL.Path)
	a.cfg.Sleep(r, d)
	status := http.StatusOK
	if fail {
		status = http.StatusInternalServerError
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{
		"version": a.cfg.Version, "behaviour": string(a.cfg.Behaviour), "status": strconv.Itoa(status),
	})
}
