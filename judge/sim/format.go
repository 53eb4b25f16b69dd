package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write simulation report: %w", err)
	}
	return nil
}

// WriteMarkdown writes the per-scenario table: rollback rate (false rollbacks for a good canary,
// detection for a bad one) with its 95% interval, pauses, times to verdict and canary exposure.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	tr, sch := r.Config.Traffic, r.Config.Schedule
	fmt.Fprintf(&b, "%d simulated rollouts per scenario (seed %d): %.0f requests/s on average (diurnal ±%.0f%%, bursts ×%.1f load every ~%.0f s), "+
		"latency median %.0f ms, P99 %.0f ms (log-normal body, Pareto tail), %.1f%% background 5xx; steps %s%% then 100%%.\n\n",
		r.Config.Rollouts, r.Config.Seed, tr.RPS, 100*tr.Diurnal, tr.BurstLoad, tr.BurstEvery, r.BaselineMedianMS, r.BaselineP99MS,
		100*tr.ErrorRate, joinSteps(sch.Steps))
	b.WriteString("| scenario | mode | rolled back (A/A: false rollbacks, A/B: detection) | paused | promoted | median time to verdict | P95 time to verdict | median time to roll back | canary requests served (mean) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, sr := range r.Results {
		for _, m := range sr.Modes {
			rb := "—"
			if m.RolledBack > 0 {
				rb = secs(m.MedianRollbackSeconds)
			}
			fmt.Fprintf(&b, "| %s | %s | %s [%s, %s] | %s | %s | %s | %s | %s | %.0f |\n",
				sr.Scenario.Name, m.Mode, pctStr(m.RollbackRate), pctStr(m.RollbackLow), pctStr(m.RollbackHigh),
				pctStr(float64(m.Paused)/float64(m.Rollouts)), pctStr(float64(m.Promoted)/float64(m.Rollouts)),
				secs(m.MedianSeconds), secs(m.P95Seconds), rb, m.MeanExposed)
		}
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write simulation report: %w", err)
	}
	return nil
}

func pctStr(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }

func secs(s float64) string {
	if s < 100 {
		return fmt.Sprintf("%.1f s", s)
	}
	return fmt.Sprintf("%.0f s", s)
}

func joinSteps(steps []float64) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = fmt.Sprintf("%g", s)
	}
	return strings.Join(parts, "% → ")
}
