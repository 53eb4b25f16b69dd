package cmd

import (
	"strconv"
	"strings"
	"testing"
)

// TestAnalyzeSpecWithStableControl: `analyze --spec` of a rollout spec with analysis.control stable
// queries stable's series as the control, never the baseline's (there is none).
func TestAnalyzeSpecWithStableControl(t *testing.T) {
	t.Parallel()
	f := &fakePrometheus{}
	url := f.start(t, map[string][]string{"stable": {"10", "11", "12", "10", "11"}, "canary": {"10", "12", "11", "10", "11"}})
	spec := writeFile(t, "rollout.yaml", `version: 1
service: shop
stable: {addresses: ["http://127.0.0.1:1"]}
deploy:
  canary: {type: static, addresses: ["http://127.0.0.1:3"]}
gateway: {type: builtin, listen: "127.0.0.1:0"}
metrics:
  type: prometheus
  prometheus: {url: `+strconv.Quote(url)+`}
analysis:
  control: stable
  resolution: 1s
  metrics:
    - {name: p99-latency, kind: latency, quantile: 0.99, direction: increase, group: latency}
steps:
  - {weight: 10, warmup: 1s, interval: 3s, duration: 10s}
`)
	code, out, errOut := runAnalyze(t, nil, "--spec", spec, "--start", "2026-11-22T03:55:00Z", "--end", "2026-11-22T03:59:00Z", "--step", "1m")
	if code != ExitOK {
		t.Fatalf("exit %d, want 0\n%s\n%s", code, out, errOut)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	stable := 0
	for _, q := range f.queries {
		if strings.Contains(q, `"baseline"`) {
			t.Errorf("query %q reads the baseline", q)
		}
		if strings.Contains(q, `cohort="stable"`) {
			stable++
		}
	}
	if stable != 1 || len(f.queries) != 2 {
		t.Errorf("queries %q: want one for stable and one for the canary", f.queries)
	}
}
