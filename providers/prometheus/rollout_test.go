package prometheus_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
	"github.com/canaryctl/canaryctl/providers/prometheus"
	"github.com/canaryctl/canaryctl/providers/prometheus/promtest"
	"github.com/canaryctl/canaryctl/providers/proxy"
	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/deploy"
)

// rolloutSite is one service: real stable, baseline and canary upstreams, the built-in proxy in
// front of stable, and the proxy's /metrics for Prometheus.
type rolloutSite struct {
	px                       *proxy.Proxy
	front, metrics           *httptest.Server
	stable, baseline, canary string
}

func newRolloutSite(t *testing.T, canaryDelay time.Duration) *rolloutSite {
	t.Helper()
	up := func(delay time.Duration) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tm := time.NewTimer(delay)
			defer tm.Stop()
			select {
			case <-tm.C:
			case <-r.Context().Done():
			}
			fmt.Fprintln(w, "ok")
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	s := &rolloutSite{stable: up(2 * time.Millisecond), baseline: up(2 * time.Millisecond), canary: up(canaryDelay)}
	px, err := proxy.New(proxy.Config{Upstreams: map[providers.Cohort][]string{providers.Stable: {s.stable}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = px.Close() })
	s.px = px
	s.front = httptest.NewServer(px)
	t.Cleanup(s.front.Close)
	s.metrics = httptest.NewServer(px.MetricsHandler())
	t.Cleanup(s.metrics.Close)
	return s
}

// load sends requests through the proxy from 4 clients until ctx ends (at most 20000).
// runEngine runs a rollout of spec through this site's proxy with metrics and dep, under load, and
// returns its outcome and the engine (for its state).
func (s *rolloutSite) runEngine(t *testing.T, spec *rollout.Spec, metrics rollout.Metrics, dep rollout.Deployer) (rollout.Outcome, *rollout.Engine) {
	t.Helper()
	store, err := rollout.OpenStore(rollout.StoreConfig{Root: t.TempDir(), Service: spec.Service})
	if err != nil {
		t.Fatal(err)
	}
	judge, err := rollout.NewKayentaJudge(rollout.KayentaJudgeConfig{Analysis: spec.Analysis})
	if err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	eng, err := rollout.New(rollout.Config{Spec: spec, Gateway: s.px, Metrics: metrics, Deployer: dep, Judge: judge,
		Store: store, Progress: &progress, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	stopLoad, cancelLoad := context.WithCancel(ctx)
	wait := s.load(stopLoad)
	if err := eng.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	out, err := eng.Run(ctx)
	cancelLoad()
	wait()
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return out, eng
}

func (s *rolloutSite) load(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := 0
	client := &http.Client{Timeout: 5 * time.Second}
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				sent++
				stop := sent > 20000
				mu.Unlock()
				if stop {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.front.URL+"/", nil)
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	return wg.Wait
}

const rolloutSpecYAML = `version: 1
service: shop
stable: {addresses: ["%s"]}
deploy:
  baseline: {type: static, addresses: ["%s"]}
  canary: {type: static, addresses: ["%s"]}
gateway: {type: builtin, listen: "127.0.0.1:0"}
analysis:
  mode: kayenta # Prometheus series; sequential (the builtin default) needs the proxy's request log
  resolution: 1s
  thresholds: {pass: 95, marginal: 75}
  metrics:
    - {name: median-latency, kind: latency, quantile: 0.5, direction: increase, group: latency, effectSize: {allowedIncrease: 1.5}}
    - {name: 5xx-rate, kind: error_rate, direction: increase, critical: true, nanStrategy: replace, group: errors}
steps:
  - {weight: 50, warmup: 4s, interval: 8s, duration: 20s} # 2 s points (twice the 1 s scrape): 8 in the final interval, enough for Mann-Whitney
onMarginal: rollback
`

// TestRolloutWithPrometheusMetrics drives the real rollout engine with the built-in proxy as its
// gateway and this provider, reading a real Prometheus that scrapes the proxy, as its metrics: a
// canary that takes 150 ms is rolled back (all traffic back on stable), a canary as fast as
// baseline is promoted. Both services are scraped by one Prometheus and told apart by instance.
func TestRolloutWithPrometheusMetrics(t *testing.T) {
	t.Parallel()
	good, bad := newRolloutSite(t, 2*time.Millisecond), newRolloutSite(t, 150*time.Millisecond)
	host := func(s *rolloutSite) string { return strings.TrimPrefix(s.metrics.URL, "http://") }
	prom := promtest.Start(t, host(good), host(bad))
	prom.WaitUp(t, 2)

	run := func(t *testing.T, s *rolloutSite) (rollout.Outcome, *rollout.Spec) {
		spec, err := rollout.ParseSpec(strings.NewReader(fmt.Sprintf(rolloutSpecYAML, s.stable, s.baseline, s.canary)))
		if err != nil {
			t.Fatalf("spec: %v", err)
		}
		metrics, err := prometheus.New(prometheus.Config{URL: prom.URL, Selector: `instance="` + host(s) + `"`,
			MinWindow: 2 * time.Second, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		// The preflight check passes before any traffic moves (no canary data yet: render and parse).
		if err := metrics.Preflight(t.Context(), spec.MetricDefs(), providers.Window{End: time.Now(), Step: time.Second}); err != nil {
			t.Fatalf("preflight: %v", err)
		}
		dep, err := deploy.New(spec.Deploy, deploy.Options{Service: spec.Service, LogDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := s.runEngine(t, spec, metrics, dep)
		return out, spec
	}

	t.Run("slow canary is rolled back", func(t *testing.T) {
		t.Parallel()
		out, _ := run(t, bad)
		if out.Phase != rollout.RolledBack {
			t.Fatalf("outcome %+v, want RolledBack", out)
		}
		split, _ := bad.px.Split(t.Context())
		if split.Canary != 0 || split.Baseline != 0 {
			t.Errorf("split after rollback = %s, want everything on stable", split)
		}
	})
	t.Run("good canary is promoted", func(t *testing.T) {
		t.Parallel()
		out, _ := run(t, good)
		if out.Phase != rollout.Promoted {
			t.Fatalf("outcome %+v, want Promoted", out)
		}
		st, err := good.px.State(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(fmt.Sprint(st), good.canary) {
			t.Errorf("proxy state after promotion %+v does not route stable to the canary %s", st, good.canary)
		}
	})
}

// TestRolloutCountsFailedQueriesTowardTheErrorLimit: a Prometheus that answers 503 makes every
// measurement fail; the engine tolerates consecutiveErrorLimit-1 of them, then rolls back, and
// the gateway ends with all traffic on stable.
func TestRolloutCountsFailedQueriesTowardTheErrorLimit(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	spec, err := rollout.ParseSpec(strings.NewReader(`version: 1
service: shop
stable: {addresses: ["http://127.0.0.1:1"]}
deploy:
  baseline: {type: static, addresses: ["http://127.0.0.1:2"]}
  canary: {type: static, addresses: ["http://127.0.0.1:3"]}
gateway: {type: builtin, listen: "127.0.0.1:0"}
analysis:
  mode: kayenta # Prometheus series; sequential (the builtin default) needs the proxy's request log
  resolution: 1s
  consecutiveErrorLimit: 2
  metrics:
    - {name: p99, kind: latency, quantile: 0.99, direction: increase, group: latency}
steps:
  - {weight: 10, warmup: 0s, interval: 1s, duration: 30s}
`))
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := prometheus.New(prometheus.Config{URL: down.URL, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	store, err := rollout.OpenStore(rollout.StoreConfig{Root: root, Service: spec.Service})
	if err != nil {
		t.Fatal(err)
	}
	judge, err := rollout.NewKayentaJudge(rollout.KayentaJudgeConfig{Analysis: spec.Analysis})
	if err != nil {
		t.Fatal(err)
	}
	gw := fake.NewGateway()
	eng, err := rollout.New(rollout.Config{Spec: spec, Gateway: gw, Metrics: metrics, Deployer: fake.NewDeployer(),
		Judge: judge, Store: store, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := eng.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if out.Phase != rollout.RolledBack || !strings.Contains(out.Reason, "2 consecutive errors") || !strings.Contains(out.Reason, "503") {
		t.Fatalf("outcome %+v, want RolledBack after 2 consecutive errors naming the 503", out)
	}
	if s := gw.Current(); s != (providers.Split{}) {
		t.Errorf("split after rollback %v, want all on stable", s)
	}
	if n := calls.Load(); n < 2 {
		t.Errorf("%d queries, want at least 2", n)
	}
}
