//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
	"github.com/canaryctl/canaryctl/rollout"
)

// kongShape renders an upstream's targets (address=weight[tags]) and balancing.
func kongShape(k *kongtest.Server, upstream string) string {
	var ts []string
	for _, t := range k.Targets(upstream) {
		ts = append(ts, fmt.Sprintf("%s=%d%v", t.Target, t.Weight, t.Tags))
	}
	sort.Strings(ts)
	up := k.Entity("upstreams", upstream)
	return fmt.Sprintf("%s | %v/%v", strings.Join(ts, " "), up["algorithm"], up["hash_on"])
}

// cutAfterDelete stands between canaryctl and the Admin API: once Kong has answered the first
// DELETE of a target, every later request gets 503 until pass is called, and deleted is closed:
// a Kong that went away right after a promotion deleted one of stable's targets.
type cutAfterDelete struct {
	*httptest.Server
	mu      sync.Mutex
	cut     bool
	tripped bool // once: the later DELETEs of the abort or the resumed run pass
	deleted chan struct{}
}

func newCutAfterDelete(t *testing.T, admin string) *cutAfterDelete {
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	c := &cutAfterDelete{deleted: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(u)
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		cut := c.cut
		c.mu.Unlock()
		if cut {
			http.Error(w, `{"message":"Service Unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
		if r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/targets/") {
			c.mu.Lock()
			if !c.tripped {
				c.cut, c.tripped = true, true
				close(c.deleted)
			}
			c.mu.Unlock()
		}
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *cutAfterDelete) pass() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = false
}

// TestKongKilledRunThenAbortOrResume: the real binary, Kong targets mode, killed -9 in the 50/50
// step (stable at weight 0, a target drained by an operator beside it), or while promoting, right
// after the promotion deleted one of stable's targets. `canaryctl abort` from another process
// restores the upstream exactly as it was (weights 100/50, the drained target at 0 with its tags;
// a deleted stable target is created again); `run --resume` finishes in the documented promoted
// shape.
func TestKongKilledRunThenAbortOrResume(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, tc := range []struct{ end, killed string }{
		{"abort", "in the 50/50 step"},
		{"resume", "in the 50/50 step"},
		{"abort", "promoting, after a stable target was deleted"},
		{"resume", "promoting, after a stable target was deleted"},
	} {
		end := tc.end
		t.Run(end+" after a kill "+tc.killed, func(t *testing.T) {
			t.Parallel()
			k := kongtest.New()
			t.Cleanup(k.Close)
			admin := k.AdminURL()
			var front *cutAfterDelete
			if strings.HasPrefix(tc.killed, "promoting") {
				front = newCutAfterDelete(t, admin)
				admin = front.URL
			}
			s0, s1 := kongInstance(t, "stable", false), kongInstance(t, "stable", false)
			base, can := kongInstance(t, "baseline", false), kongInstance(t, "canary", false)
			kongEntities(t, k,
				[2]any{"upstreams", map[string]any{"name": "web-up"}},
				[2]any{"services", map[string]any{"name": "web", "host": "web-up"}},
				[2]any{"routes", map[string]any{"paths": []string{"/"}, "service": map[string]any{"name": "web"}}},
				[2]any{"targets", map[string]any{"upstream": "web-up", "target": hostPort(s0), "weight": 100}},
				[2]any{"targets", map[string]any{"upstream": "web-up", "target": hostPort(s1), "weight": 50}},
				[2]any{"targets", map[string]any{"upstream": "web-up", "target": "10.9.9.9:80", "weight": 0, "tags": []string{"drained"}}})
			original := kongShape(k, "web-up")
			dir := t.TempDir()
			spec := filepath.Join(dir, "web.yaml")
			if err := os.WriteFile(spec, fmt.Appendf(nil, `version: 1
service: web
stable: {addresses: [%q, %q]}
deploy:
  baseline: {type: static, addresses: [%q]}
  canary: {type: static, addresses: [%q]}
gateway:
  type: kong
  kong: {admin: %s, service: web, propagation: 2s, timeout: 2s, log: {flush: 100ms}}
metrics: {type: kong-log}
# only the 5xx rate is judged: latency on a shared test machine is noise for a test about Kong's state
analysis:
  mode: kayenta
  resolution: 1s
  metrics:
    - {name: 5xx-rate, kind: error_rate, direction: increase, critical: true, mustHaveData: true, nanStrategy: remove, group: errors}
steps:
  - {weight: 20, warmup: 0s, interval: 6s, duration: 6s}
  - {weight: 100, warmup: 0s, interval: 6s, duration: 6s}
onMarginal: rollback
`, s0.URL, s1.URL, base.URL, can.URL, admin), 0o644); err != nil {
				t.Fatal(err)
			}
			load := startKongLoad(k)
			state := filepath.Join(dir, "state")
			first := start(t, nil, "run", "--spec", spec, "--state-dir", state)
			if front == nil {
				waitState(t, state, "web", time.Minute, "analysing the 50/50 step", func(st *rollout.State) bool {
					return st.Phase == rollout.Analyzing && st.Step == 1
				})
			} else {
				select {
				case <-front.deleted:
				case <-time.After(2 * time.Minute):
					t.Fatal("the rollout deleted no target within 2 minutes")
				}
			}
			if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			first.wait(t, 10*time.Second)
			if front != nil {
				front.pass()
				if st, err := rollout.LoadStateFile(filepath.Join(state, "web", "state.json")); err != nil || st.Phase != rollout.Promoting {
					t.Fatalf("killed with state %v (%v), want Promoting", st, err)
				}
			}
			mid := kongShape(k, "web-up")
			t.Logf("killed -9 %s; upstream: %s", tc.killed, mid)
			if mid == original {
				t.Fatal("the upstream was not changed before the kill: the test proves nothing")
			}
			var r result
			want := original
			if end == "abort" {
				r = run(t, time.Minute, nil, "abort", "web", "--state-dir", state)
			} else {
				r = run(t, 2*time.Minute, nil, "run", "--spec", spec, "--state-dir", state, "--resume")
				want = fmt.Sprintf("10.9.9.9:80=0[drained] %s=100[] | round-robin/none", hostPort(can))
			}
			during := load.end()
			t.Logf("%s: exit %d; answers %v; stderr:\n%s", end, r.code, during, r.stderr)
			if r.code != 0 {
				t.Fatalf("%s: exit %d", end, r.code)
			}
			if got := kongShape(k, "web-up"); got != want {
				t.Fatalf("after %s the upstream is\n  %s\nwant\n  %s", end, got, want)
			}
			if ps := k.Plugins(); len(ps) != 0 {
				t.Errorf("plugins left: %v", ps)
			}
		})
	}
}
