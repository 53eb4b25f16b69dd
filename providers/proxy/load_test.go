package proxy

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// loadDuration is 5 s by default, 1 s with -short, and CANARYCTL_PROXY_LOAD (e.g. "30s") for the
// long run: CANARYCTL_PROXY_LOAD=30s go test -race -run TestLoad ./providers/proxy/
func loadDuration(t *testing.T) time.Duration {
	if s := os.Getenv("CANARYCTL_PROXY_LOAD"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 10*time.Minute {
			t.Fatalf("CANARYCTL_PROXY_LOAD=%q must be a duration up to 10m, e.g. 30s", s)
		}
		return d
	}
	if testing.Short() {
		return time.Second
	}
	return 5 * time.Second
}

// TestLoadSplitChangesRollbackPromote: 8 clients (one sending POST bodies) send requests for the whole run while the admin
// API changes the split every 100 ms, rolls back once and promotes once; no client request fails.
func TestLoadSplitChangesRollbackPromote(t *testing.T) {
	dur := loadDuration(t)
	slow := func(name string) *backend {
		b := &backend{name: name}
		mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.served.Add(1)
			if name != "stable" {
				time.Sleep(time.Millisecond) // keep requests in flight across table swaps
			}
			w.Header().Set("X-Upstream", name)
			io.WriteString(w, name)
		})
		b.srv = newLoopbackServer(t, mux)
		return b
	}
	stable, baseline, canary := slow("stable"), slow("baseline"), slow("canary")
	p, srv := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{"stable": {stable.url()}}})
	admin := startAdmin(t, p)
	cl, err := NewClient(ClientConfig{BaseURL: admin.URL, Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}

	// The admin schedule is a fixed number of 100 ms steps (rollback at the middle, promote at three
	// quarters), so it is the same on a loaded machine, where ticks come late: the clients run until
	// the schedule ends. The whole run is capped at 4× the nominal duration plus 30 s.
	steps := max(int(dur/(100*time.Millisecond)), 4)
	rollbackAt, promoteAt := steps/2, steps*3/4
	if steps < 8 {
		promoteAt = -1 // too short for both; the rollback is what matters
	}
	capCtx, capCancel := context.WithTimeout(t.Context(), 4*dur+30*time.Second)
	defer capCancel()
	ctx, cancel := context.WithCancel(capCtx)
	defer cancel()
	const workers, maxRequests = 8, 2_000_000
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	c := testClient()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && sent.Load() < maxRequests {
				sent.Add(1)
				// worker 0 sends bodies, which the h1 loop hands to net/http on the same connection
				var resp *http.Response
				var err error
				if w == 0 {
					resp, err = c.Post(srv.URL+"/load", "text/plain", strings.NewReader("body"))
				} else {
					resp, err = c.Get(srv.URL + "/load")
				}
				if err != nil {
					failed.Add(1)
					t.Errorf("request failed: %v", err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					t.Errorf("request answered %d", resp.StatusCode)
				}
			}
		}()
	}

	splits := []providers.Split{{Canary: 250, Baseline: 250}, {Canary: 1000, Baseline: 1000}, {Canary: 5000, Baseline: 2500}, {Canary: 100}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var changes, rollbacks, promotes int
	actx := context.WithoutCancel(ctx)
	start := time.Now()
	for i := range steps {
		select {
		case <-capCtx.Done():
			cancel()
			wg.Wait()
			t.Fatalf("schedule stopped at step %d of %d after %s: %v", i, steps, time.Since(start), capCtx.Err())
		case <-tick.C:
		}
		switch i {
		case rollbackAt:
			if err := cl.Rollback(actx); err != nil {
				t.Fatal(err)
			}
			rollbacks++
		case promoteAt:
			if err := cl.Promote(actx); err != nil {
				t.Fatal(err)
			}
			promotes++
		default:
			st, err := cl.State(actx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Upstreams[providers.Canary]) == 0 {
				if err := cl.SetUpstreams(actx, providers.Canary, []string{canary.url()}); err != nil {
					t.Fatal(err)
				}
				if err := cl.SetUpstreams(actx, providers.Baseline, []string{baseline.url()}); err != nil {
					t.Fatal(err)
				}
			}
			if err := cl.SetSplit(actx, splits[i%len(splits)]); err != nil {
				t.Fatal(err)
			}
			changes++
		}
	}
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	t.Logf("%s nominal, %s taken: %d requests (%.0f/s), %d failed, %d split changes, %d rollback, %d promote; served stable %d baseline %d canary %d",
		dur, elapsed.Round(time.Millisecond), sent.Load(), float64(sent.Load())/elapsed.Seconds(), failed.Load(), changes, rollbacks, promotes, stable.served.Load(), baseline.served.Load(), canary.served.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), sent.Load())
	}
	wantPromotes := 1
	if promoteAt < 0 {
		wantPromotes = 0
	}
	if rollbacks != 1 || promotes != wantPromotes || changes != steps-1-wantPromotes {
		t.Fatalf("%d changes, %d rollbacks, %d promotes in %d steps", changes, rollbacks, promotes, steps)
	}
	if canary.served.Load() == 0 || baseline.served.Load() == 0 || stable.served.Load() == 0 {
		t.Fatal("a cohort got no traffic")
	}
}
