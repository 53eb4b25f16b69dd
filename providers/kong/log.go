package kong

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// LogEntry is the part of a Kong http-log entry (kong/pdk/log.lua serialize) the kong-log source
// reads.
type LogEntry struct {
	StartedAt int64 `json:"started_at"` // ms since the epoch
	Latencies struct {
		Request int64 `json:"request"` // ms, first byte from the client to last byte sent
		Kong    int64 `json:"kong"`
		Proxy   int64 `json:"proxy"` // ms spent by the upstream; -1 when none answered
	} `json:"latencies"`
	Response struct {
		Status int `json:"status"`
	} `json:"response"`
	Tries []struct {
		IP   string `json:"ip"`
		Port int    `json:"port"`
	} `json:"tries"`
	UpstreamURI string `json:"upstream_uri"`
	// Request and Route (kong/pdk/log.lua serialize) name the route for per-route analysis; Route
	// is null when the entry matched none or the route has no name.
	Request struct {
		Method string `json:"method"`
		URI    string `json:"uri"`
	} `json:"request"`
	Route *struct {
		Name string `json:"name"`
	} `json:"route"`
}

// ParseLogBatch parses an http-log request body: one entry (queue.max_batch_size = 1) or a JSON
// array of entries (batches).
func ParseLogBatch(body []byte) ([]LogEntry, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return nil, errors.New("empty http-log body")
	}
	if b[0] == '[' {
		var out []LogEntry
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, fmt.Errorf("parse http-log batch: %w", err)
		}
		return out, nil
	}
	var e LogEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("parse http-log entry: %w", err)
	}
	return []LogEntry{e}, nil
}

// LogConfig configures a LogReceiver.
type LogConfig struct {
	// Addr to listen on, default 127.0.0.1:0. Kong must be able to reach it.
	Addr string
	// MaxRequests bounds the requests kept in memory (default 1,000,000; the oldest go first).
	MaxRequests int
	// Resolve looks up a target's host name (default net.DefaultResolver.LookupHost), since Kong
	// logs the IP it connected to.
	Resolve func(ctx context.Context, host string) ([]string, error)
	Logger  *slog.Logger
}

// LogReceiver is the kong-log metrics source: an HTTP server for Kong's http-log plugin that
// attributes each logged request to a cohort by the upstream target it was sent to (the last of
// `tries`), giving request-level latency and status per cohort. It implements the rollout engine's
// RequestLog interface.
type LogReceiver struct {
	cfg LogConfig
	log *slog.Logger
	srv *http.Server
	ln  net.Listener

	mu       sync.Mutex
	cohorts  map[string]providers.Cohort // ip:port -> cohort
	reqs     []providers.Request
	unknown  int
	received int
	changed  chan struct{} // closed and replaced whenever entries arrive
}

// NewLogReceiver listens on cfg.Addr and serves http-log posts until Close.
func NewLogReceiver(cfg LogConfig) (*LogReceiver, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = 1_000_000
	}
	if cfg.Resolve == nil {
		cfg.Resolve = net.DefaultResolver.LookupHost
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("kong-log: listen on %s: %w", cfg.Addr, err)
	}
	r := &LogReceiver{cfg: cfg, log: logger.With("metrics", "kong-log"), ln: ln, cohorts: map[string]providers.Cohort{}, changed: make(chan struct{})}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL is the receiver's address as http://host:port/.
func (r *LogReceiver) URL() string { return "http://" + r.ln.Addr().String() + "/" }

// Close stops the server.
func (r *LogReceiver) Close() error { return r.srv.Close() }

// SetCohort maps the target addresses (host:port) of a cohort; host names are resolved to the IPs
// Kong logs.
func (r *LogReceiver) SetCohort(c providers.Cohort, addrs []string) error {
	keys := map[string]bool{}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("kong-log: %q is not host:port", a)
		}
		if ip := net.ParseIP(host); ip != nil {
			keys[net.JoinHostPort(ip.String(), port)] = true
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ips, err := r.cfg.Resolve(ctx, host)
		cancel()
		if err != nil {
			return fmt.Errorf("kong-log: resolve target host %q: %w", host, err)
		}
		for _, ip := range ips {
			keys[net.JoinHostPort(ip, port)] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.cohorts {
		if v == c {
			delete(r.cohorts, k)
		}
	}
	for k := range keys {
		r.cohorts[k] = c
	}
	return nil
}

// ServeHTTP accepts an http-log post.
func (r *LogReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost && req.Method != http.MethodPut && req.Method != http.MethodPatch {
		http.Error(w, "http-log receiver: POST entries here", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 64<<20))
	if err != nil {
		http.Error(w, "http-log receiver: body too large", http.StatusRequestEntityTooLarge)
		return
	}
	entries, err := ParseLogBatch(body)
	if err != nil {
		r.log.Warn("bad http-log post", "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.add(entries)
	w.WriteHeader(http.StatusOK)
}

func (r *LogReceiver) add(entries []LogEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range entries {
		r.received++
		if len(e.Tries) == 0 {
			r.unknown++ // Kong answered without an upstream (no route, no peer)
			continue
		}
		last := e.Tries[len(e.Tries)-1]
		ip := last.IP
		if p := net.ParseIP(ip); p != nil {
			ip = p.String()
		}
		c, ok := r.cohorts[net.JoinHostPort(ip, strconv.Itoa(last.Port))]
		if !ok {
			r.unknown++
			continue
		}
		lat := e.Latencies.Proxy
		if lat < 0 {
			lat = e.Latencies.Request
		}
		status := e.Response.Status
		if len(e.Tries) > 0 && status == 0 {
			status = http.StatusBadGateway
		}
		r.reqs = append(r.reqs, providers.Request{
			Time:    time.UnixMilli(e.StartedAt + e.Latencies.Request),
			Cohort:  c,
			Status:  status,
			Latency: time.Duration(lat) * time.Millisecond,
			Method:  e.Request.Method,
			Path:    e.Request.URI,
		})
		if e.Route != nil {
			r.reqs[len(r.reqs)-1].KongRoute = e.Route.Name
		}
	}
	if over := len(r.reqs) - r.cfg.MaxRequests; over > 0 {
		r.reqs = append(r.reqs[:0:0], r.reqs[over:]...)
	}
	if r.changed != nil {
		close(r.changed)
		r.changed = make(chan struct{})
	}
}

// WaitReceived blocks until at least n entries have been received in total, or ctx ends.
func (r *LogReceiver) WaitReceived(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		got, ch := r.received, r.changed
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kong-log: wait for %d entries (have %d): %w", n, got, ctx.Err())
		case <-ch:
		}
	}
}

// Requests returns the logged requests that finished in [since, until), in time order. Latency is
// the upstream's (latencies.proxy), so Kong's own time does not blur the comparison.
func (r *LogReceiver) Requests(ctx context.Context, since, until time.Time) ([]providers.Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []providers.Request
	for _, q := range r.reqs {
		if !q.Time.Before(since) && q.Time.Before(until) {
			out = append(out, q)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// Stats returns how many entries were received and how many could not be attributed to a cohort.
func (r *LogReceiver) Stats() (received, unattributed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.received, r.unknown
}
