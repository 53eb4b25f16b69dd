package rollout

import (
	"slices"
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/judge/sim"
)

// TestSimulatorDescribesEngineDefaults ties the simulator's default schedule (the published table) to
// what a spec with every default runs: the same judged shares per step, step durations, Kayenta
// judgement schedule and thresholds, look interval and bake limits, and the same analyzer config.
func TestSimulatorDescribesEngineDefaults(t *testing.T) {
	t.Parallel()
	s, err := ParseSpec(strings.NewReader(minimalSpec + gatewayLine))
	if err != nil {
		t.Fatal(err)
	}
	if s.Analysis.Mode != ModeSequential {
		t.Fatalf("default mode %q, want %q for builtin metrics", s.Analysis.Mode, ModeSequential)
	}
	sch := sim.DefaultSchedule()
	var judged []float64
	for i, st := range s.Steps {
		sp := s.SplitFor(i)
		judged = append(judged, float64(sp.Canary)/100)
		if st.Duration != sch.Duration || st.Interval != sch.Interval || st.Warmup != sch.Warmup {
			t.Errorf("steps[%d]: duration %s interval %s warmup %s; simulator %s %s %s", i, st.Duration, st.Interval, st.Warmup, sch.Duration, sch.Interval, sch.Warmup)
		}
		if sp.Baseline != sp.Canary {
			t.Errorf("steps[%d]: baseline %d bp, canary %d bp; the simulator gives baseline the canary's share", i, sp.Baseline, sp.Canary)
		}
	}
	if !slices.Equal(judged, sch.Steps) {
		t.Errorf("engine judges canary shares %v, simulator %v", judged, sch.Steps)
	}
	if len(sch.Steps) != 3 {
		t.Errorf("simulator judges %d steps, want the engine's 3 (2.5, 10 and 100 as 50/50)", len(sch.Steps))
	}
	a := s.Analysis
	if a.Thresholds.Pass != sch.Pass || a.Thresholds.Marginal != sch.Marginal || a.Resolution != sch.Resolution {
		t.Errorf("kayenta thresholds %v/%v resolution %s; simulator %v/%v %s", a.Thresholds.Pass, a.Thresholds.Marginal, a.Resolution, sch.Pass, sch.Marginal, sch.Resolution)
	}
	q := a.Sequential
	if q.LookInterval != sequential.DefaultLookInterval || q.MinBake != sch.MinBake || q.MaxBake != sch.MaxBake || q.ExpandFactor != sch.ExpandFactor {
		t.Errorf("engine look %s minBake %s maxBake %s expand %v; simulator minBake %s maxBake %s expand %v",
			q.LookInterval, q.MinBake, q.MaxBake, q.ExpandFactor, sch.MinBake, sch.MaxBake, sch.ExpandFactor)
	}
	if got := q.analyzerConfig(); got != sequential.DefaultConfig() {
		t.Errorf("engine analyzer config %+v, simulator default %+v", got, sequential.DefaultConfig())
	}
}
