package cmd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
	"github.com/canaryctl/canaryctl/rollout"
)

// waitStateIn polls dir's state.json of service until the rollout reaches phase.
func waitStateIn(t *testing.T, dir, service string, phase rollout.Phase) *rollout.State {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		st, err := rollout.LoadStateFile(filepath.Join(dir, service, "state.json"))
		if err == nil && st.Phase == phase {
			return st
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("rollout did not reach %s (last: %+v, %v)", phase, st, err)
		}
	}
}

type runResult struct {
	code        int
	out, stderr string
}

// TestSecondRunOfAServiceIsRefused: two runs of one service from two state directories (two CI
// workspaces) against the same gateway: the second is refused before it deploys anything, with the
// first's run id and holder and the ways to take over, and the first ends as it would alone.
func TestSecondRunOfAServiceIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end rollouts take seconds")
	}
	t.Parallel()
	for _, gateway := range []string{"builtin", "kong"} {
		t.Run(gateway, func(t *testing.T) {
			t.Parallel()
			var (
				spec, service string
				vars          map[string]string
				split         func() providers.Split
				owner         func() string
			)
			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			var wg sync.WaitGroup
			defer wg.Wait()
			defer stop()
			if gateway == "builtin" {
				w := newWorld(t)
				wg.Add(1)
				go func() { defer wg.Done(); w.load(ctx, 100, 6000) }()
				spec, service, vars = w.spec(t, fastSteps), "shop", w.vars()
				// Only errors are judged: both runs share two cores with the race detector, and the
				// pipeline, not latency sensitivity, is under test.
				raw, _ := os.ReadFile(spec)
				s := strings.Replace(string(raw), "    - {name: p99-latency, kind: latency, quantile: 0.99, mustHaveData: true, effectSize: {allowedIncrease: 10}}\n", "", 1)
				if err := os.WriteFile(spec, []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
				split = func() providers.Split { s, _ := w.px.Split(t.Context()); return s }
				owner = func() string { return "" }
			} else {
				k, url := kongWorld(t, ctx, &wg)
				spec, service, vars = url, "web", nil
				split = func() providers.Split { return providers.Split{} }
				owner = func() string {
					resp, err := http.Get(k.AdminURL() + "/upstreams/canaryctl-owner.web")
					if err != nil {
						return err.Error()
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					if resp.StatusCode == 404 {
						return ""
					}
					return string(b)
				}
				_ = split
			}
			dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
			first := make(chan runResult, 1)
			go func() {
				code, out, errOut := rtRun(ctx, vars, "run", "--spec", spec, "--state-dir", dirA)
				first <- runResult{code, out, errOut}
			}()
			stA := waitStateIn(t, dirA, service, rollout.Analyzing)
			before := split()
			code, _, errB := rtRun(t.Context(), vars, "run", "--spec", spec, "--state-dir", dirB)
			if code == ExitOK || !strings.Contains(errB, "owned at the gateway by run "+stA.RunID) || !strings.Contains(errB, "canaryctl run --resume --service "+service) {
				t.Fatalf("second run: exit %d, stderr %s\nwant a refusal naming run %s", code, errB, stA.RunID)
			}
			if _, err := os.Stat(filepath.Join(dirB, service, "state.json")); err == nil {
				t.Errorf("the refused run wrote a state: it got past the claim")
			}
			if after := split(); after != before {
				t.Errorf("the refused run changed the split: %v -> %v", before, after)
			}
			if gateway == "kong" && !strings.Contains(owner(), "owner-run:"+stA.RunID) {
				t.Errorf("the Kong marker does not name run %s: %s", stA.RunID, owner())
			}
			r := <-first
			if r.code != ExitOK {
				t.Fatalf("first run: exit %d\n%s", r.code, r.stderr)
			}
			if strings.Contains(r.stderr, "lease") {
				t.Errorf("first run saw lease trouble:\n%s", r.stderr)
			}
			if o := owner(); o != "" {
				t.Errorf("the ownership marker outlived the rollout: %s", o)
			}
		})
	}
}

// kongWorld sets up kongtest with a Service web on upstream web-up, stable/baseline/canary servers,
// load through Kong's proxy, and returns the spec file.
func kongWorld(t *testing.T, ctx context.Context, wg *sync.WaitGroup) (*kongtest.Server, string) {
	t.Helper()
	k := kongtest.New()
	t.Cleanup(k.Close)
	srv := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return s
	}
	stable, base, can := srv("stable"), srv("baseline"), srv("canary")
	for _, e := range []struct {
		kind string
		body map[string]any
	}{
		{"upstreams", map[string]any{"name": "web-up"}},
		{"services", map[string]any{"name": "web", "host": "web-up"}},
		{"routes", map[string]any{"paths": []string{"/"}, "service": map[string]any{"name": "web"}}},
		{"targets", map[string]any{"upstream": "web-up", "target": strings.TrimPrefix(stable.URL, "http://")}},
	} {
		if _, err := k.Create("", e.kind, e.body); err != nil {
			t.Fatal(err)
		}
	}
	spec := filepath.Join(t.TempDir(), "rollout.yaml")
	if err := os.WriteFile(spec, fmt.Appendf(nil, `version: 1
service: web
stable: {addresses: [%q]}
deploy:
  baseline: {type: static, addresses: [%q]}
  canary: {type: static, addresses: [%q]}
gateway:
  type: kong
  kong: {admin: %s, service: web, propagation: 50ms, timeout: 2s, log: {flush: 100ms}}
metrics: {type: kong-log}
analysis:
  mode: kayenta
  resolution: 1s
  metrics:
    - {name: 5xx-rate, kind: error_rate, critical: true, nanStrategy: replace, mustHaveData: true}
steps:
  - {weight: 20, warmup: 0s, interval: 1s, duration: 5s}
  - {weight: 50, warmup: 0s, interval: 1s, duration: 5s}
onMarginal: rollback
`, stable.URL, base.URL, can.URL, k.AdminURL()), 0o644); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { // 100 requests/s through Kong's proxy, at most 6000
		defer wg.Done()
		tick := time.NewTicker(time.Second / 100)
		defer tick.Stop()
		cl := &http.Client{Timeout: 2 * time.Second}
		for i := 0; i < 6000; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if resp, err := cl.Get(k.ProxyURL() + "/"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}()
		}
	}()
	return k, spec
}
