package tui

import (
	"fmt"

	"github.com/charmbracelet/x/ansi"

	"github.com/canaryctl/canaryctl/rollout"
)

// maxRouteRows is how many routes (the worst first) the metrics block shows.
const maxRouteRows = 4

// routes renders the interval's per-route verdicts (analysis.routes) as the engine sorted them, the
// worst first (failed, undecided, passed, too little traffic): nil without them.
func (m Model) routes(iv *rollout.Interval, w int) []string {
	if len(iv.Routes) == 0 {
		return nil
	}
	s := m.st
	failed, thin := 0, 0
	for _, r := range iv.Routes {
		switch {
		case r.Verdict == rollout.VerdictFail:
			failed++
		case r.TooLittleTraffic:
			thin++
		}
	}
	title := fmt.Sprintf("%s · %d judged, %d failed, %d with too little traffic", s.bold.Render("routes"), len(iv.Routes), failed, thin)
	lines := []string{title}
	for i, r := range iv.Routes {
		if i == maxRouteRows {
			lines = append(lines, s.dim.Render(fmt.Sprintf("  … %d more (canaryctl status -o json)", len(iv.Routes)-i)))
			break
		}
		word := string(r.Verdict)
		if r.TooLittleTraffic {
			word = "too little traffic"
		}
		name := ansi.Truncate(r.Route, 28, "…")
		line := fmt.Sprintf("  %-28s %s  canary %d %s %d  5xx %s%% vs %s%%", name, s.verdict(r.Verdict).Render(fmt.Sprintf("%-18s", word)),
			r.CanaryRequests, controlName(iv), r.ControlRequests, pctText(float64(r.CanaryErrorPercent)), pctText(float64(r.ControlErrorPercent)))
		lines = append(lines, ansi.Truncate(line, max(w, 20), "…"))
	}
	return lines
}

// pctText renders a percentage with three significant digits, "–" when unknown.
func pctText(v float64) string {
	if v != v {
		return "–"
	}
	return fmt.Sprintf("%.3g", v)
}
