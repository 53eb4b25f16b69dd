package prometheus

import (
	"errors"
	"net/http"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
)

// TestControlStable: with Config.Control stable (a rollout's analysis.control stable) the control
// side of a Pair is stable's series, the baseline is never queried, and CohortSeries fetches one
// cohort alone (before/after judging); an unknown control is a ConfigError.
func TestControlStable(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t, func(c providers.Cohort, _ int, _ string, w http.ResponseWriter, _ *http.Request) {
		switch c {
		case providers.Stable:
			writeJSON(w, 200, matrixBody(testStart, testStep, series{at: map[int]string{0: "10", 1: "11", 2: "12", 3: "13", 4: "14"}}))
		case providers.Canary:
			writeJSON(w, 200, matrixBody(testStart, testStep, series{at: map[int]string{0: "20", 1: "21", 2: "22", 3: "23", 4: "24"}}))
		default:
			writeJSON(w, 400, apiErrorBody("bad_data", "the baseline must not be queried"))
		}
	})
	cfg := Config{URL: f.srv.URL, Control: providers.Stable}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Control() != providers.Stable {
		t.Fatalf("Control() = %s", p.Control())
	}
	for name, m := range map[string]providers.Metric{"latency": latency, "error rate": errorRate} {
		t.Run(name, func(t *testing.T) {
			got, err := p.Pair(t.Context(), m, testWindow)
			if err != nil {
				t.Fatalf("Pair: %v", err)
			}
			if !sameFloats(got.Baseline, []float64{10, 11, 12, 13, 14}) || !sameFloats(got.Canary, []float64{20, 21, 22, 23, 24}) {
				t.Fatalf("Pair = %v / %v, want stable's series as the control", got.Baseline, got.Canary)
			}
			one, err := p.CohortSeries(t.Context(), m, providers.Stable, testWindow)
			if err != nil || !sameFloats(one, []float64{10, 11, 12, 13, 14}) {
				t.Fatalf("CohortSeries(stable) = %v, %v", one, err)
			}
		})
	}
	if n := f.callsOf(providers.Baseline); n != 0 {
		t.Errorf("baseline queried %d times", n)
	}
	if err := p.Preflight(t.Context(), []providers.Metric{latency}, testWindow); err != nil {
		t.Errorf("Preflight with a stable control: %v", err)
	}
	if _, err := New(Config{URL: f.srv.URL, Control: providers.Canary}); !errors.As(err, new(*ConfigError)) {
		t.Errorf("control canary: %v, want a ConfigError", err)
	}
}
