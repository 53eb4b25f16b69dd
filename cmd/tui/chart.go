package tui

import (
	"fmt"
	"math"
	"strings"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/rollout"
)

// The chart is a small renderer of our own rather than a library: it is a bar per judgement on a
// fixed 0..100 scale with two threshold lines and step labels, about a hundred lines. asciigraph
// draws line plots (no bars, no per-bar colors) and ntcharts would add a module and its dependencies
// for one widget.

// eighths are the partial blocks for sub-row resolution, from 1/8 to 8/8.
var eighths = []string{"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"}

type chartConfig struct {
	width, rows    int
	pass, marginal float64 // NaN: unknown, no line
	styles         styles
	// value, when set, gives each interval's bar instead of its score (0..100, NaN: none), the
	// verdict that colors it, and its glyphs: a full cell and the eighths of a partial one.
	value func(rollout.Interval) (v float64, color rollout.Verdict, full string, partial []string)
}

// scoreBar is the default bar: the interval's score, colored by its verdict.
func scoreBar(iv rollout.Interval) (float64, rollout.Verdict, string, []string) {
	return float64(iv.Score), iv.Verdict, "█", eighths
}

// Glyphs of the sequential chart: progress toward passing the step is drawn like a score, progress
// toward rolling back with a shade, so the two read apart without colors.
const (
	glyphTowardPass     = "█"
	glyphTowardRollback = "▒"
)

// lookBar is the bar of a sequential look: how far its tests got toward a decision (lookProgress);
// without a direction yet it is drawn as toward passing, in the undecided color.
func lookBar(iv rollout.Interval) (float64, rollout.Verdict, string, []string) {
	if iv.Sequential == nil {
		return math.NaN(), iv.Verdict, glyphTowardPass, eighths
	}
	v, toward := lookProgress(iv.Sequential)
	if toward == rollout.VerdictFail {
		return v, toward, glyphTowardRollback, []string{"░", "░", "░", "░", "▒", "▒", "▒", "▒"}
	}
	return v, toward, glyphTowardPass, eighths
}

// lookProgress is how far a sequential look's tests got toward a decision, from 0 to 100 on the
// scale of their e-values' logarithms (100: decided), and which way: toward a rollback (any test's
// evidence of a regression against its 1/alpha) or toward passing the step (the least advanced of the
// paired tests' evidence of no regression as large as the margin, against its 1/beta); the larger of
// the two. The thresholds are those of the report's confidence levels (1/(1-level)).
func lookProgress(r *sequential.Report) (float64, rollout.Verdict) {
	fail, pass, paired := 0.0, 1.0, false
	for _, d := range r.Decisions {
		fail = max(fail, evidence(d.EValue, d.LowerLevel, d.Verdict == sequential.Fail))
		if d.UpperLevel > 0 { // a paired test; the 5xx guard only ever fails
			paired = true
			pass = min(pass, evidence(d.PassEValue, d.UpperLevel, d.Verdict == sequential.Pass))
		}
	}
	if !paired {
		pass = 0
	}
	if max(fail, pass) < weakEvidence {
		// e-values wander around 1 before the data say anything: no direction yet
		return 100 * max(fail, pass), rollout.VerdictNeedMoreData
	}
	if fail >= pass {
		return 100 * fail, rollout.VerdictFail
	}
	return 100 * pass, rollout.VerdictPass
}

// weakEvidence is the share of the way to a threshold below which a look's bar shows no direction:
// an e-value of 1.8 against a threshold of 100 (or 1.45 against 20) is what noise gives.
const weakEvidence = 0.125

// evidence is log(e)/log(1/(1-level)) within [0, 1]: 1 when the test decided that way.
func evidence(e, level float64, decided bool) float64 {
	if decided {
		return 1
	}
	if !(e > 1) || !(level > 0 && level < 1) || math.IsInf(e, 0) {
		return 0
	}
	return min(math.Log(e)/-math.Log1p(-level), 1)
}

// renderChart draws one bar per interval (the latest that fit), a y axis with 100, the thresholds
// and 0, the pass line (─) and the marginal line (┈) behind the bars, and under them the step each
// bar belongs to. It returns rows+1 lines.
func renderChart(ivs []rollout.Interval, c chartConfig) []string {
	s := c.styles
	const axisW = 4 // "100┤"
	plotW := max(c.width-axisW-1, 1)
	colW := 3
	if len(ivs)*colW > plotW {
		colW = 2
	}
	if n := plotW / colW; len(ivs) > n {
		ivs = ivs[len(ivs)-n:]
	}
	rowOf := func(v float64) int { // the row whose band holds v (0 = bottom)
		if math.IsNaN(v) {
			return -1
		}
		return min(int(v/100*float64(c.rows)), c.rows-1)
	}
	passRow, margRow := rowOf(c.pass), rowOf(c.marginal)
	value := c.value
	if value == nil {
		value = scoreBar
	}
	lines := make([]string, 0, c.rows+1)
	for r := c.rows - 1; r >= 0; r-- {
		label := ""
		fill := " "
		switch {
		case r == passRow:
			label, fill = fmtScore(c.pass), "─"
		case r == margRow:
			label, fill = fmtScore(c.marginal), "┈"
		case r == c.rows-1:
			label = "100"
		case r == 0:
			label = "0"
		}
		var b strings.Builder
		b.WriteString(s.dim.Render(fmt.Sprintf("%3s┤", label)))
		lo := float64(r) * 100 / float64(c.rows)
		band := 100 / float64(c.rows)
		for _, iv := range ivs {
			score, color, full, partial := value(iv)
			cell := ""
			switch {
			case math.IsNaN(score):
				if r == 0 {
					cell = "·" // a judgement without a score (e.g. "need more data")
					if iv.Verdict == rollout.VerdictError {
						cell = "×"
					}
				}
			case score >= lo+band:
				cell = full
			case score > lo:
				cell = partial[min(int((score-lo)/band*8), 7)]
			case r == 0:
				cell = partial[0] // a score of 0 still shows a bar
			}
			if cell == "" {
				b.WriteString(s.dim.Render(strings.Repeat(fill, colW)))
				continue
			}
			b.WriteString(s.verdict(color).Render(strings.Repeat(cell, colW-1)))
			b.WriteString(s.dim.Render(fill))
		}
		lines = append(lines, b.String())
	}
	// Step labels: the step number under the first bar of each step.
	var b strings.Builder
	b.WriteString(s.dim.Render("    "))
	prev := -1
	for _, iv := range ivs {
		cell := strings.Repeat(" ", colW)
		if iv.Step != prev {
			cell = fmt.Sprintf("%-*s", colW, fmt.Sprintf("%d", iv.Step+1))
			prev = iv.Step
		}
		b.WriteString(cell)
	}
	if len(ivs) == 0 {
		b.WriteString(s.dim.Render("no judgement yet"))
	} else {
		b.WriteString(s.dim.Render(" step"))
	}
	lines = append(lines, b.String())
	return lines
}
