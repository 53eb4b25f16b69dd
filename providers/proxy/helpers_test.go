package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// backend is a real upstream on 127.0.0.1 that counts what it serves and names itself in the
// X-Upstream response header.
type backend struct {
	name   string
	srv    *httptest.Server
	served atomic.Int64
}

func newBackend(t testing.TB, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.served.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Upstream", name)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) url() string { return b.srv.URL }

func newLoopbackServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// refusedURL returns the URL of a loopback port that refuses connections.
func refusedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr
}

// served is a proxy serving on 127.0.0.1 through Serve.
type served struct{ URL string }

// startProxy builds a proxy from cfg and serves it on 127.0.0.1 with Serve (the h1 loop, handing
// off to net/http what it does not take).
func startProxy(t testing.TB, cfg Config) (*Proxy, *served) {
	t.Helper()
	return startProxyFront(t, cfg, false)
}

// fronts names the two ways Serve can take client connections, for tests that run on both.
var fronts = []struct {
	name        string
	netHTTPOnly bool
}{{"h1", false}, {"net-http", true}}

// startProxyFront is startProxy with the choice of front: the h1 loop, or net/http only.
func startProxyFront(t testing.TB, cfg Config, netHTTPOnly bool) (*Proxy, *served) {
	t.Helper()
	p, addr, _ := serveProxy(t, cfg, ServeConfig{ShutdownTimeout: 5 * time.Second, NetHTTPOnly: netHTTPOnly})
	return p, &served{URL: "http://" + addr}
}

func stableOnly(u string) Config {
	return Config{Upstreams: map[providers.Cohort][]string{"stable": {u}}}
}

// serveFor runs Serve on 127.0.0.1 (or sc.Listener) with sc and returns its address and a stop
// that reports how long Serve took to return and what it returned (it also runs at cleanup).
func serveFor(t testing.TB, cfg Config, sc ServeConfig) (addr string, stop func() (time.Duration, error)) {
	t.Helper()
	_, addr, stop = serveProxy(t, cfg, sc)
	return addr, stop
}

func serveProxy(t testing.TB, cfg Config, sc ServeConfig) (p *Proxy, addr string, stop func() (time.Duration, error)) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Listener == nil {
		if sc.Listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, sc) }()
	var once sync.Once
	var took time.Duration
	var serveErr error
	stop = func() (time.Duration, error) {
		once.Do(func() {
			start := time.Now()
			cancel()
			serveErr = <-done
			took = time.Since(start)
		})
		return took, serveErr
	}
	t.Cleanup(func() {
		if _, err := stop(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Serve: %v", err)
		}
	})
	return p, sc.Listener.Addr().String(), stop
}

func testClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}
}

// get sends one request and returns the X-Upstream of the answer.
func get(t testing.TB, c *http.Client, req *http.Request) string {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", req.URL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", req.URL, resp.StatusCode)
	}
	return resp.Header.Get("X-Upstream")
}

func newReq(t testing.TB, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func three(t testing.TB) (stable, baseline, canary *backend, ups map[providers.Cohort][]string) {
	stable, baseline, canary = newBackend(t, "stable"), newBackend(t, "baseline"), newBackend(t, "canary")
	return stable, baseline, canary, map[providers.Cohort][]string{
		providers.Stable: {stable.url()}, providers.Baseline: {baseline.url()}, providers.Canary: {canary.url()},
	}
}

// samples returns the request samples recorded since since, polling for up to 5 s until there are
// at least n: a sample is recorded just after the answer is sent, so the client may see the answer
// first. p is the proxy itself or a Client of its admin API.
func samples(t testing.TB, p interface {
	Requests(ctx context.Context, since, until time.Time) ([]providers.Request, error)
}, since time.Time, n int) []providers.Request {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		reqs, err := p.Requests(t.Context(), since, time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if len(reqs) >= n || time.Now().After(deadline) {
			return reqs
		}
		time.Sleep(5 * time.Millisecond)
	}
}
