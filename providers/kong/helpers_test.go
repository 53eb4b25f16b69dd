package kong

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
)

// backend is an instance behind Kong: it answers its name, with an optional status and delay.
type backend struct {
	*httptest.Server
	name string
}

func newBackend(t *testing.T, name string, status int) *backend {
	t.Helper()
	b := &backend{name: name}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(b.Close)
	return b
}

// addr is the backend's host:port, as a Kong target.
func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

// fixture is a kongtest server with service "web" -> upstream "web-up" -> stable targets, and a
// route "/".
type fixture struct {
	kong     *kongtest.Server
	stable   []*backend
	baseline *backend
	canary   *backend
}

func newFixture(t *testing.T, opts ...kongtest.Option) *fixture {
	t.Helper()
	k := kongtest.New(opts...)
	t.Cleanup(k.Close)
	f := &fixture{kong: k}
	must := func(_ map[string]any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(k.Create("", "upstreams", map[string]any{"name": "web-up"}))
	must(k.Create("", "services", map[string]any{"name": "web", "host": "web-up", "port": 80}))
	must(k.Create("", "routes", map[string]any{"name": "web", "paths": []string{"/"}, "service": map[string]any{"name": "web"}}))
	for i := 0; i < 2; i++ {
		b := newBackend(t, fmt.Sprintf("stable-%d", i), 200)
		f.stable = append(f.stable, b)
		must(k.Create("", "targets", map[string]any{"upstream": "web-up", "target": b.addr(), "weight": 100}))
	}
	f.baseline = newBackend(t, "baseline", 200)
	f.canary = newBackend(t, "canary", 200)
	return f
}

func (f *fixture) config(mode Mode) Config {
	return Config{
		AdminURL:    f.kong.AdminURL(),
		Service:     "web",
		Mode:        mode,
		RolloutID:   "r1",
		Propagation: -1,
		Backoff:     time.Millisecond,
		Timeout:     2 * time.Second,
	}
}

func newRouter(t *testing.T, cfg Config) *Router {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// get sends n sequential requests through the data plane and counts answers by body.
func get(t *testing.T, url string, n int, hdr map[string]string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest(http.MethodGet, url+"/", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			out[fmt.Sprintf("status %d", resp.StatusCode)]++
			continue
		}
		out[string(b)]++
	}
	return out
}

// load runs workers that send requests through the data plane until stop is closed or max requests
// were sent, and returns the count of requests that did not answer 200.
type load struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	cond   *sync.Cond
	ok     int
	failed []string
	stop   chan struct{}
	done   int // workers that returned
	n      int
}

// waitFor blocks until n more requests have finished (or every worker stopped).
func (l *load) waitFor(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	target := l.ok + len(l.failed) + n
	for l.ok+len(l.failed) < target && l.done < l.n {
		l.cond.Wait()
	}
}

func startLoad(url string, workers, max int) *load {
	l := &load{stop: make(chan struct{}), n: workers}
	l.cond = sync.NewCond(&l.mu)
	var sent int
	var smu sync.Mutex
	client := &http.Client{Timeout: 5 * time.Second}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() {
				l.mu.Lock()
				l.done++
				l.cond.Broadcast()
				l.mu.Unlock()
			}()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				smu.Lock()
				if sent >= max {
					smu.Unlock()
					return
				}
				sent++
				smu.Unlock()
				resp, err := client.Get(url + "/")
				l.mu.Lock()
				switch {
				case err != nil:
					l.failed = append(l.failed, err.Error())
				case resp.StatusCode != 200:
					b, _ := io.ReadAll(resp.Body)
					l.failed = append(l.failed, fmt.Sprintf("%d %s", resp.StatusCode, b))
				default:
					l.ok++
				}
				l.cond.Broadcast()
				l.mu.Unlock()
				if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}
		}()
	}
	return l
}

func (l *load) finish() (ok int, failed []string) {
	close(l.stop)
	l.wg.Wait()
	return l.ok, l.failed
}

func ctx(t *testing.T) context.Context { return t.Context() }
