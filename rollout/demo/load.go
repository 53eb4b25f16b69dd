package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// LoadConfig configures a load generator.
type LoadConfig struct {
	// Target is the URL every request goes to; it must be on loopback (127.0.0.1, ::1, localhost).
	Target string
	// RPS is the request rate, 1..MaxRPS (default DefaultRPS). Requests are sent at a steady pace
	// whether or not earlier ones have answered (open loop), as real clients do.
	RPS int
	// MaxRequests bounds the run (default: RPS × 10 minutes).
	MaxRequests int
	// MaxInFlight bounds concurrent requests (default 256); a request that would exceed it is
	// counted as dropped, not sent.
	MaxInFlight int
	// Timeout per request (default 5s).
	Timeout time.Duration
	// RoutePath and RouteShare: every 1/RouteShare-th request is a POST to Target with this path
	// appended instead (share 0: none), one small endpoint beside the rest of the traffic.
	RoutePath  string
	RouteShare float64
	// OnResult, if set, sees every result (from many goroutines).
	OnResult func(Result)
	// Client sends the requests; default: a pooled client without proxy from the environment.
	Client *http.Client
	Now    func() time.Time
}

// Limits and defaults of the load generator.
const (
	// DemoRouteShare: the demo sends 2% of its requests to demo.BrokenRoute.
	DemoRouteShare = 0.02
	DefaultRPS     = 400
	MaxRPS         = 2000
	maxInFlight    = 256
)

// Result is one request as the client saw it.
type Result struct {
	Start, End time.Time
	Status     int    // 0 when no response came back
	Version    string // the VersionHeader of the answer
	Route      bool   // sent to LoadConfig.RoutePath
	Err        error
}

// Failed reports whether the client saw a failure: no response, or a 5xx.
func (r Result) Failed() bool { return r.Err != nil || r.Status >= 500 }

// Stats summarise a load run.
type Stats struct {
	Sent    int `json:"sent"`
	OK      int `json:"ok"`
	Failed  int `json:"failed"`  // 5xx or no response
	Dropped int `json:"dropped"` // not sent: MaxInFlight reached
	// FailedBy counts failures by the version that answered ("" when no response came back).
	FailedBy map[string]int `json:"failedByVersion,omitempty"`
	// FirstFailure is the time of the first failure per version.
	FirstFailure map[string]time.Time `json:"firstFailureByVersion,omitempty"`
	// LastFailure is the time of the last failure per version.
	LastFailure map[string]time.Time `json:"lastFailureByVersion,omitempty"`
	// ServedBy counts responses by version.
	ServedBy map[string]int `json:"servedByVersion,omitempty"`
	// LastServed is the time of the last response per version.
	LastServed map[string]time.Time `json:"lastServedByVersion,omitempty"`
}

// Load is a running load generator.
type Load struct {
	cfg   LoadConfig
	mu    sync.Mutex
	stats Stats
	wg    sync.WaitGroup
	done  chan struct{}
}

// CheckLoopback returns an error unless u is an http URL on a loopback host.
func CheckLoopback(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return fmt.Errorf("load target %q: %w", target, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("load target %q must be an http:// URL", target)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("load target %q must be on loopback (127.0.0.1, ::1 or localhost)", target)
	}
	return nil
}

// StartLoad validates cfg and sends requests until ctx ends or MaxRequests have been sent.
// Wait returns the statistics once every request has finished.
func StartLoad(ctx context.Context, cfg LoadConfig) (*Load, error) {
	if err := CheckLoopback(cfg.Target); err != nil {
		return nil, err
	}
	if cfg.RPS == 0 {
		cfg.RPS = DefaultRPS
	}
	if cfg.RPS < 1 || cfg.RPS > MaxRPS {
		return nil, fmt.Errorf("load rate %d must be between 1 and %d requests/s", cfg.RPS, MaxRPS)
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = cfg.RPS * 600
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = maxInFlight
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RouteShare < 0 || cfg.RouteShare > 1 || cfg.RouteShare > 0 && !strings.HasPrefix(cfg.RoutePath, "/") {
		return nil, fmt.Errorf("load route %q with share %v: give a path starting with / and a share in [0, 1]", cfg.RoutePath, cfg.RouteShare)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{
			Proxy: nil, MaxIdleConnsPerHost: cfg.MaxInFlight, IdleConnTimeout: 30 * time.Second,
		}}
	}
	l := &Load{cfg: cfg, done: make(chan struct{}), stats: Stats{
		FailedBy: map[string]int{}, FirstFailure: map[string]time.Time{}, LastFailure: map[string]time.Time{},
		ServedBy: map[string]int{}, LastServed: map[string]time.Time{},
	}}
	go l.run(ctx)
	return l, nil
}

// run paces the requests: every tick it sends as many as are due since the start.
func (l *Load) run(ctx context.Context) {
	defer close(l.done)
	sem := make(chan struct{}, l.cfg.MaxInFlight)
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	sent := 0
	for sent < l.cfg.MaxRequests {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := min(int(time.Since(start).Seconds()*float64(l.cfg.RPS)), l.cfg.MaxRequests)
		for ; sent < due; sent++ {
			select {
			case sem <- struct{}{}:
			default:
				l.mu.Lock()
				l.stats.Dropped++
				l.mu.Unlock()
				continue
			}
			l.wg.Add(1)
			route := l.cfg.RouteShare > 0 && int(float64(sent+1)*l.cfg.RouteShare) > int(float64(sent)*l.cfg.RouteShare)
			go func() {
				defer func() { <-sem; l.wg.Done() }()
				l.add(ctx, l.send(ctx, route))
			}()
		}
	}
}

func (l *Load) send(ctx context.Context, route bool) Result {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	res := Result{Start: l.cfg.Now(), Route: route}
	method, target := http.MethodGet, l.cfg.Target
	if route {
		method, target = http.MethodPost, strings.TrimSuffix(target, "/")+l.cfg.RoutePath
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		res.Err, res.End = err, l.cfg.Now()
		return res
	}
	resp, err := l.cfg.Client.Do(req)
	if err != nil {
		res.Err, res.End = err, l.cfg.Now()
		return res
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	res.End, res.Status, res.Version = l.cfg.Now(), resp.StatusCode, resp.Header.Get(VersionHeader)
	return res
}

func (l *Load) add(ctx context.Context, r Result) {
	if r.Err != nil && ctx.Err() != nil {
		return // cut short because the run was stopped: not a failure a client would see
	}
	if l.cfg.OnResult != nil {
		l.cfg.OnResult(r)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.stats
	s.Sent++
	if r.Version != "" {
		s.ServedBy[r.Version]++
		if r.End.After(s.LastServed[r.Version]) {
			s.LastServed[r.Version] = r.End
		}
	}
	if !r.Failed() {
		s.OK++
		return
	}
	s.Failed++
	s.FailedBy[r.Version]++
	if _, ok := s.FirstFailure[r.Version]; !ok {
		s.FirstFailure[r.Version] = r.End
	}
	if r.End.After(s.LastFailure[r.Version]) {
		s.LastFailure[r.Version] = r.End
	}
}

// Stats returns the statistics so far.
func (l *Load) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.FailedBy = cloneMap(s.FailedBy)
	s.FirstFailure = cloneMap(s.FirstFailure)
	s.LastFailure = cloneMap(s.LastFailure)
	s.ServedBy = cloneMap(s.ServedBy)
	s.LastServed = cloneMap(s.LastServed)
	return s
}

// Wait waits until the generator has stopped (ctx ended or MaxRequests sent) and every request
// has finished, and returns the statistics.
func (l *Load) Wait() Stats {
	<-l.done
	l.wg.Wait()
	return l.Stats()
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
