package kong

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
)

// paced sends GET / through the data plane every 2 ms, from one goroutine, until finish is called
// or 20000 requests were sent, and counts the answers (body of a 200, else "status body").
type paced struct {
	mu    sync.Mutex
	cond  *sync.Cond
	got   map[string]int
	ended bool
	stop  chan struct{}
	done  chan struct{}
}

func startPaced(url string) *paced {
	p := &paced{got: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(p.done)
		defer func() {
			p.mu.Lock()
			p.ended = true
			p.cond.Broadcast()
			p.mu.Unlock()
		}()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for range 20000 {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			key := ""
			resp, err := client.Get(url + "/")
			if err != nil {
				key = "error " + err.Error()
			} else {
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				key = string(b)
				if resp.StatusCode != http.StatusOK {
					key = fmt.Sprintf("%d %s", resp.StatusCode, b)
				}
			}
			p.mu.Lock()
			p.got[key]++
			p.cond.Broadcast()
			p.mu.Unlock()
		}
	}()
	return p
}

// waitFor blocks until n answers were key (or the load ended).
func (p *paced) waitFor(key string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.got[key] < n && !p.ended {
		p.cond.Wait()
	}
}

func (p *paced) finish() map[string]int {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got
}

// bluegreen's rollback switches the Service back to blue, then deletes what it put into green (the
// green upstream it created, or its canary targets in a green upstream that was there before). A
// Kong node routes by the old host until its router is rebuilt (every worker_state_update_frequency;
// the Admin API cannot show it), so the deletion must wait for propagation: here the node's router
// follows 150 ms late and its balancers at once (the worst phase of Kong's two independent
// timers), and not one request sent through the node during the rollback may fail. Without the
// wait, the requests in those 150 ms find no green upstream (503 "name resolution failed") or no
// canary target in it (503 "failure to get a peer").
func TestBlueGreenRollbackWaitsBeforeDeletingGreen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		existingGreen bool
	}{
		{"green upstream created by the rollout", false},
		{"green upstream of the user's", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kongtest.WithRouterDelay(150*time.Millisecond))
			f.kong.SyncBalancer()
			if tc.existingGreen {
				if _, err := f.kong.Create("", "upstreams", map[string]any{"name": "web-green", "tags": []string{"team-web"}}); err != nil {
					t.Fatal(err)
				}
			}
			cfg := f.config(ModeBlueGreen)
			cfg.GreenUpstream = "web-green"
			cfg.Propagation = time.Second
			r := newRouter(t, cfg)
			if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
				t.Fatal(err)
			}
			if err := r.SetSplit(ctx(t), providers.Split{Canary: providers.BasisPoints}); err != nil {
				t.Fatal(err)
			}
			if got := f.kong.RoutedHost("web"); got != "web-green" {
				t.Fatalf("after SetSplit 100%% returned the node routes the service to %q, want web-green", got)
			}
			if got := get(t, f.kong.ProxyURL(), 4, nil); got["canary"] != 4 {
				t.Fatalf("at 100%% the node answered %v, want the canary only", got)
			}
			load := startPaced(f.kong.ProxyURL())
			load.waitFor("canary", 5)
			err := r.Rollback(ctx(t))
			// the load goes on until the node routes to blue: what a deletion before that broke shows
			load.waitFor("stable-0", 10)
			got := load.finish()
			if err != nil {
				t.Fatal(err)
			}
			for k, n := range got {
				if k != "canary" && k != "stable-0" && k != "stable-1" {
					t.Errorf("%d requests during the rollback answered %q", n, k)
				}
			}
			if got["stable-0"]+got["stable-1"] == 0 {
				t.Errorf("no request reached stable during the rollback: %v", got)
			}
			green := f.kong.Entity("upstreams", "web-green")
			switch {
			case !tc.existingGreen && green != nil:
				t.Errorf("the green upstream the rollout created is still there: %v", green)
			case tc.existingGreen && green == nil:
				t.Errorf("the user's green upstream was deleted")
			case tc.existingGreen && len(f.kong.Targets("web-green")) != 0:
				t.Errorf("the canary's targets are still in the user's green upstream: %v", f.kong.Targets("web-green"))
			}
			t.Logf("answers during the rollback: %v", got)
		})
	}
}
