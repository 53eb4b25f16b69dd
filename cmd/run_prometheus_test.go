package cmd

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/prometheus/promtest"
)

// promSpec writes a spec for world w whose metrics come from Prometheus at url, selecting the
// world's proxy by its scrape instance.
func promSpec(t *testing.T, w *rtWorld, prometheusYAML, metricsYAML, steps string) string {
	t.Helper()
	s := fmt.Sprintf(`service: shop
stable: {addresses: [%q]}
deploy:
  baseline: {type: static, addresses: [%q]}
  canary: {type: static, addresses: [%q]}
gateway: {type: builtin, admin: %q}
metrics:
  type: prometheus
  prometheus: %s
analysis:
  resolution: 1s
  thresholds: {pass: 95, marginal: 75}
  metrics:
%ssteps:
%s`, w.stable.URL, w.baseline.URL, w.canary.URL, w.admin, prometheusYAML, metricsYAML, steps)
	p := filepath.Join(w.dir, "spec.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const promMetrics = `    - {name: median-latency, kind: latency, quantile: 0.5, direction: increase, group: latency, effectSize: {allowedIncrease: 1.5}}
    - {name: 5xx-rate, kind: error_rate, direction: increase, critical: true, nanStrategy: replace, group: errors}
`

// TestRunWithPrometheusMetrics: `canaryctl run` with metrics.type prometheus, a real Prometheus
// scraping the built-in proxy's admin API: a canary answering 500 is rolled back (exit 3, everything on
// stable), a good canary is promoted (exit 0).
func TestRunWithPrometheusMetrics(t *testing.T) {
	t.Parallel()
	good, bad := newWorld(t), newWorld(t)
	bad.canaryStatus.Store(500)
	// Prometheus scrapes each proxy's admin API /metrics with the admin token, as documented.
	goodTarget, badTarget := strings.TrimPrefix(good.admin, "http://"), strings.TrimPrefix(bad.admin, "http://")
	prom := promtest.StartTargets(t, promtest.Target{Addr: goodTarget, BearerToken: rtToken},
		promtest.Target{Addr: badTarget, BearerToken: rtToken})
	prom.WaitUp(t, 2)
	// Points are one rate window (minWindow) apart. A 2 s window, twice the 1 s scrape interval,
	// lost a point to every scrape that timed out on a loaded machine, and the step's final
	// judgement had 7 points at best (5 needed); a 3 s window survives one failed scrape, and a
	// 24 s step gives it 8 points.
	steps := "  - {weight: 50, duration: 24s, interval: 4s, warmup: 3s}\n"
	for _, tc := range []struct {
		name   string
		w      *rtWorld
		target string
		code   int
	}{
		{"5xx canary rolls back", bad, badTarget, ExitFail},
		{"good canary is promoted", good, goodTarget, ExitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			go tc.w.load(ctx, 100, 4000)
			pyaml := fmt.Sprintf(`{url: %q, selector: 'instance="%s"', minWindow: 3s}`, prom.URL, tc.target)
			code, _, stderr := rtRun(t.Context(), tc.w.vars(), "run", "--spec", promSpec(t, tc.w, pyaml, promMetrics, steps),
				"--state-dir", tc.w.stateDir())
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			if tc.code == ExitFail {
				if s, _ := tc.w.px.Split(t.Context()); s != (providers.Split{}) {
					t.Errorf("split after rollback %v, want everything on stable", s)
				}
				if !strings.Contains(stderr, "5xx-rate") {
					t.Errorf("stderr does not name the failing metric:\n%s", stderr)
				}
			}
		})
	}
}

// TestRunPrometheusPreflightStopsBeforeTraffic: a query that cannot tell baseline from canary, or
// that Prometheus cannot parse, stops the run with exit 2 before anything is deployed or any
// traffic moves; so does a missing secret.
func TestRunPrometheusPreflightStopsBeforeTraffic(t *testing.T) {
	t.Parallel()
	var queries atomic.Int64
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"1:10: parse error: unclosed left parenthesis"}`)
	}))
	t.Cleanup(fake.Close)
	steps := "  - {weight: 50, duration: 16s, interval: 4s, warmup: 3s}\n"
	tests := []struct {
		name, prom, metrics, want string
		vars                      map[string]string
	}{
		{"cohort-blind query", fmt.Sprintf(`{url: %q}`, fake.URL),
			"    - {name: cpu, kind: query, query: 'avg(rate(process_cpu_seconds_total[1m]))', group: cpu}\n",
			"metrics preflight: prometheus: metrics[cpu].query: baseline and canary select the same series", nil},
		{"syntax error", fmt.Sprintf(`{url: %q}`, fake.URL),
			"    - {name: cpu, kind: query, query: 'avg(rate(x{ {{- .Selector}} }[1m])', group: cpu}\n",
			"unclosed left parenthesis", nil},
		{"missing token", fmt.Sprintf(`{url: %q, tokenEnv: PROM_TOKEN}`, fake.URL), promMetrics,
			"tokenEnv: environment variable PROM_TOKEN is empty", nil},
		{"no prometheus section", "", promMetrics, "metrics.prometheus (line 7): required", nil},
		{"unknown query set", fmt.Sprintf(`{url: %q, querySet: kong}`, fake.URL), promMetrics,
			`metrics.prometheus.querySet (line 9): unknown query set "kong"`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			spec := promSpec(t, w, tc.prom, tc.metrics, steps)
			if tc.prom == "" {
				b, _ := os.ReadFile(spec)
				os.WriteFile(spec, []byte(strings.Replace(string(b), "  prometheus: \n", "", 1)), 0o644)
			}
			vars := w.vars()
			for k, v := range tc.vars {
				vars[k] = v
			}
			code, _, stderr := rtRun(t.Context(), vars, "run", "--spec", spec, "--state-dir", w.stateDir())
			if code != ExitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant 2 and %q", code, stderr, tc.want)
			}
			if s, _ := w.px.Split(t.Context()); s != (providers.Split{}) {
				t.Errorf("split %v: traffic moved", s)
			}
			if up := w.pxState(t); strings.Contains(up, w.canary.URL) {
				t.Errorf("canary registered at the gateway: %s", up)
			}
		})
	}
}
