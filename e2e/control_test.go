//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

// TestRunStableControlBuiltin: `canaryctl run` on the built-in proxy with analysis.control stable:
// no baseline is deployed, the canary gets its step's share (at most half) and is judged against
// stable's requests; the report and the progress lines say control stable. A good canary is
// promoted; a canary answering 500s is rolled back with all traffic on stable.
func TestRunStableControlBuiltin(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, tc := range []struct {
		name, version, behaviour string
		code                     int
	}{
		{"good canary promoted", "sc1", "good", 0},
		{"5xx canary rolled back", "sc2", "errors", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			t.Cleanup(func() { killServices(tc.version) })
			stable := stableService(t, tc.version+"-stable")
			dir := t.TempDir()
			spec := filepath.Join(dir, "sc.yaml")
			if err := os.WriteFile(spec, fmt.Appendf(nil, `version: 1
service: sc-%s
stable: {addresses: ["http://%s"]}
deploy:
  canary: {type: process, command: %q, version: %s, args: [demo-service, --version, "{{.Version}}", --behaviour, %s, --port, "{{.Port}}"],
    listenFD: true, readiness: {path: /healthz, interval: 100ms, timeout: 5s}, timeout: 20s, gracePeriod: 2s}
gateway: {type: builtin, listen: "127.0.0.1:0"}
metrics: {type: builtin}
analysis:
  control: stable
  mode: kayenta # a 5xx-only Kayenta judge, as the other builtin end-to-end tests
  resolution: 1s
  metrics:
    - {name: 5xx-rate, kind: error_rate, direction: increase, critical: true, nanStrategy: remove, group: errors}
steps:
  - {weight: 10, warmup: 500ms, interval: 3s, duration: 7s}
  - {weight: 100, warmup: 500ms, interval: 2s, duration: 7s}
onMarginal: rollback
`, tc.version, stable, bin, tc.version, tc.behaviour), 0o644); err != nil {
				t.Fatal(err)
			}
			runner := start(t, nil, "run", "--spec", spec, "--state-dir", dir)
			gw := runner.waitFor(t, embeddedProxy, time.Minute)
			load(t, gw)
			code := runner.wait(t, 2*time.Minute)
			stderr := runner.stderr.String()
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			st, err := rollout.LoadStateFile(filepath.Join(dir, "sc-"+tc.version, "state.json"))
			if err != nil {
				t.Fatal(err)
			}
			if st.Control != rollout.ControlStable || len(st.Addresses[providers.Baseline]) != 0 {
				t.Errorf("state control %q, baseline addresses %v: want stable and none", st.Control, st.Addresses[providers.Baseline])
			}
			if len(st.Intervals) == 0 {
				t.Fatal("nothing was judged")
			}
			for _, iv := range st.Intervals {
				if iv.Split.Baseline != 0 || iv.Split.Canary > 5000 || iv.Baseline == 0 || iv.Cohorts[providers.Stable].Requests != iv.Baseline {
					t.Errorf("interval %d/%d: split %v, control samples %d, cohorts %v; want stable's requests as the control", iv.Step, iv.Index, iv.Split, iv.Baseline, iv.Cohorts)
				}
			}
			if !strings.Contains(stderr, "| samples stable ") || !strings.Contains(stderr, "(control: stable)") || strings.Contains(stderr, "cohort=baseline") {
				t.Errorf("stderr must show stable as the control and deploy no baseline:\n%s", stderr)
			}
			if tc.code == 3 {
				if !strings.Contains(st.Reason, "5xx-rate High") {
					t.Errorf("reason %q", st.Reason)
				}
				assertNoServices(t, tc.version)
			}
		})
	}
}
