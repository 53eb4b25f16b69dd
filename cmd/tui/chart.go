package tui

import (
	"fmt"
	"math"
	"strings"

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
			score := float64(iv.Score)
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
				cell = "█"
			case score > lo:
				cell = eighths[min(int((score-lo)/band*8), 7)]
			case r == 0:
				cell = "▁" // a score of 0 still shows a bar
			}
			if cell == "" {
				b.WriteString(s.dim.Render(strings.Repeat(fill, colW)))
				continue
			}
			b.WriteString(s.verdict(iv.Verdict).Render(strings.Repeat(cell, colW-1)))
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
