package prometheus_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/prometheus"
	"github.com/canaryctl/canaryctl/providers/prometheus/promtest"
	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/deploy"
)

const stableControlSpecYAML = `version: 1
service: shop
stable: {addresses: ["%s"]}
deploy:
  canary: {type: static, addresses: ["%s"]}
gateway: {type: builtin, listen: "127.0.0.1:0"}
analysis:
  control: stable
  mode: kayenta
  resolution: 1s
  thresholds: {pass: 95, marginal: 75}
  metrics:
    - {name: median-latency, kind: latency, quantile: 0.5, direction: increase, group: latency, effectSize: {allowedIncrease: 1.5}}
    - {name: 5xx-rate, kind: error_rate, direction: increase, critical: true, nanStrategy: replace, group: errors}
steps:
  - {weight: 50, warmup: 4s, interval: 8s, duration: 20s} # 2 s points (twice the 1 s scrape): 8 in the final interval, enough for Mann-Whitney
onMarginal: rollback
`

// TestRolloutWithPrometheusStableControl: analysis.control stable with a real Prometheus scraping the
// built-in proxy: no baseline is deployed, the control's series are the proxy's cohort="stable" ones;
// a 150 ms canary is rolled back against them, a canary as fast as stable is promoted.
func TestRolloutWithPrometheusStableControl(t *testing.T) {
	t.Parallel()
	good, bad := newRolloutSite(t, 2*time.Millisecond), newRolloutSite(t, 150*time.Millisecond)
	host := func(s *rolloutSite) string { return strings.TrimPrefix(s.metrics.URL, "http://") }
	prom := promtest.Start(t, host(good), host(bad))
	prom.WaitUp(t, 2)
	for _, tc := range []struct {
		name string
		site *rolloutSite
		want rollout.Phase
	}{
		{"slow canary is rolled back", bad, rollout.RolledBack},
		{"good canary is promoted", good, rollout.Promoted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.site
			spec, err := rollout.ParseSpec(strings.NewReader(fmt.Sprintf(stableControlSpecYAML, s.stable, s.canary)))
			if err != nil {
				t.Fatalf("spec: %v", err)
			}
			metrics, err := prometheus.New(prometheus.Config{URL: prom.URL, Selector: `instance="` + host(s) + `"`,
				MinWindow: 2 * time.Second, Timeout: 5 * time.Second, Control: spec.ControlCohort()})
			if err != nil {
				t.Fatal(err)
			}
			if err := metrics.Preflight(t.Context(), spec.MetricDefs(), providers.Window{End: time.Now(), Step: time.Second}); err != nil {
				t.Fatalf("preflight: %v", err)
			}
			q, err := metrics.Render(spec.MetricDefs()[0], metrics.Control(), providers.Window{Start: time.Now(), End: time.Now().Add(time.Minute), Step: time.Second})
			if err != nil || !strings.Contains(q, `cohort="stable"`) {
				t.Fatalf("control query %q (%v): want the stable cohort", q, err)
			}
			dep, err := spec.NewDeployer(deploy.Options{Service: spec.Service, LogDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			out, eng := s.runEngine(t, spec, metrics, dep)
			if out.Phase != tc.want {
				t.Fatalf("outcome %+v, want %s", out, tc.want)
			}
			st := eng.State()
			if st.Control != rollout.ControlStable || len(st.Addresses[providers.Baseline]) != 0 {
				t.Errorf("state control %q baseline %v", st.Control, st.Addresses[providers.Baseline])
			}
			judged := false
			for _, iv := range st.Intervals {
				for _, m := range iv.Metrics {
					judged = judged || m.BaselineCount > 0
				}
				if iv.Split.Baseline != 0 {
					t.Errorf("interval split %v has a baseline share", iv.Split)
				}
			}
			if !judged {
				t.Error("no interval had stable's series to compare with")
			}
		})
	}
}
