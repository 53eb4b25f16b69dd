package cmd

import (
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

// TestStatusAndSummaryShowTheControl: status and run's summary line say when stable, not a baseline,
// was the control (and the before/after window); a baseline rollout's output is unchanged.
func TestStatusAndSummaryShowTheControl(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	cw := &rollout.TimeWindow{Start: now.Add(-2 * time.Minute), End: now.Add(-time.Minute)}
	cases := []struct {
		name          string
		control       string
		window        *rollout.TimeWindow
		status, not   []string
		summary, nots string
	}{
		{name: "baseline", control: "", not: []string{"control:", "before:"}, nots: "control"},
		{name: "stable", control: rollout.ControlStable, status: []string{"control:   stable (no baseline: the canary is compared with stable)\n"},
			not: []string{"before:"}, summary: "checkout: RolledBack (control: stable)"},
		{name: "stable before/after", control: rollout.ControlStable, window: cw,
			status:  []string{"control:   stable", "before:    stable observed 2026-11-22T04:58:00Z..2026-11-22T04:59:00Z, before the switch"},
			summary: "checkout: RolledBack (control: stable)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &rollout.State{Service: "checkout", RunID: "r1", Phase: rollout.RolledBack, Steps: 1, Weights: []float64{100},
				Split: providers.Split{}, Control: tc.control, ControlWindow: tc.window, UpdatedAt: now, FinishedAt: now}
			out := formatStatus(st, false, 0, now)
			for _, w := range tc.status {
				if !strings.Contains(out, w) {
					t.Errorf("status lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(out, w) {
					t.Errorf("status has %q:\n%s", w, out)
				}
			}
			spec := &rollout.Spec{Steps: []rollout.StepSpec{{Weight: 100}}, Analysis: rollout.AnalysisSpec{Control: tc.control}}
			line := summaryLine(rollout.NewReport(spec, *st))
			if tc.summary != "" && !strings.HasPrefix(line, tc.summary) || tc.nots != "" && strings.Contains(line, tc.nots) {
				t.Errorf("summary %q", line)
			}
		})
	}
}
