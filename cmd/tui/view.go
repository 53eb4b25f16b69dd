package tui

import (
	"cmp"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

// Glyphs of the traffic bar: distinct shapes, so the bar reads without colors (NO_COLOR).
const (
	glyphStable   = "░"
	glyphBaseline = "▒"
	glyphCanary   = "█"
)

// View renders the screen. It reads only the model (no clock, no I/O).
func (m Model) View() string {
	w, h := max(m.width, 20), max(m.height, 4)
	var top []string
	top = append(top, m.header(w)...)
	var body []string
	if m.mode == modeHelp {
		body = m.fullHelp(w)
	} else if m.snap.State != nil {
		top = append(top, m.traffic(w)...)
		top = append(top, m.metrics(w)...)
		rest := h - len(top) - 2 // status line and key help
		chartRows, eventRows := layout(rest)
		if chartRows > 0 {
			body = append(body, m.chart(w, chartRows)...)
		}
		if eventRows > 0 {
			body = append(body, m.events(w, eventRows)...)
		}
	}
	lines := append(top, body...)
	if len(lines) > h-2 {
		lines = lines[:h-2]
	}
	for len(lines) < h-2 {
		lines = append(lines, "")
	}
	lines = append(lines, m.statusLine(w), m.keyHelp(w))
	for i, l := range lines {
		lines[i] = ansi.Truncate(l, w, "…")
	}
	return strings.Join(lines, "\n")
}

// layout shares the rows left under the metrics between the score chart (title, plot rows, step
// labels) and the events (title, lines).
func layout(rest int) (chartRows, eventRows int) {
	if rest < 4 {
		return 0, max(rest-1, 0)
	}
	chartRows = min(max((rest-2)/2, 2), 10) // 80x24 keeps 3 plot rows, room for pass and marginal
	eventRows = rest - chartRows - 2
	if eventRows < 2 { // not even a title and one event: give the rows to the chart
		chartRows += max(eventRows, 0)
		eventRows = 0
	}
	return chartRows, eventRows
}

func (m Model) header(w int) []string {
	s := m.st
	st := m.snap.State
	title := s.title.Render("canaryctl")
	if st == nil {
		msg := "waiting for the rollout of " + m.cfg.Service + " to write its state…"
		if m.snap.Err != nil {
			msg = oneLine(m.snap.Err.Error())
		}
		return []string{s.title.Render("canaryctl "+m.cfg.Title) + "  " + m.cfg.Service, s.dim.Render(msg)}
	}
	parts := []string{title, s.bold.Render(st.Service), s.phase(st.Phase).Render(string(st.Phase))}
	if st.Steps > 0 {
		step := fmt.Sprintf("step %d/%d", st.Step+1, st.Steps)
		if st.Step < len(st.Weights) {
			step += " (" + providers.PercentText(st.Weights[st.Step]) + ")"
		}
		parts = append(parts, step)
	}
	parts = append(parts, "elapsed "+clock(m.elapsed()))
	runner := ""
	switch {
	case st.Phase.Terminal():
	case m.snap.Held && m.snap.PID > 0:
		runner = fmt.Sprintf("pid %d", m.snap.PID)
	case !m.snap.Held:
		runner = s.warn.Render("no process runs it")
	}
	if runner != "" {
		parts = append(parts, runner)
	}
	lines := []string{strings.Join(parts, s.dim.Render(" · "))}
	lines = append(lines, s.dim.Render("next: ")+m.next())
	if st.Reason != "" {
		lines = append(lines, s.dim.Render("why:  ")+oneLine(st.Reason))
	}
	return lines
}

func (m Model) elapsed() time.Duration {
	st := m.snap.State
	if st == nil || st.StartedAt.IsZero() {
		return 0
	}
	end := m.now
	if st.Phase.Terminal() && !st.FinishedAt.IsZero() {
		end = st.FinishedAt
	}
	return max(end.Sub(st.StartedAt), 0)
}

// next says what happens next and when.
func (m Model) next() string {
	st := m.snap.State
	spec := m.cfg.Spec
	in := func(t time.Time) string {
		d := t.Sub(m.now).Round(time.Second)
		if d < 0 {
			d = 0
		}
		return fmt.Sprintf("in %s (%s)", d, hms(t))
	}
	after := func() string {
		if st.Step+1 < st.Steps && st.Step+1 < len(st.Weights) {
			return fmt.Sprintf("step %d/%d (%s)", st.Step+2, st.Steps, providers.PercentText(st.Weights[st.Step+1]))
		}
		return "promotion"
	}
	stableControl := st.Control == rollout.ControlStable
	switch st.Phase {
	case rollout.Pending, rollout.Deploying:
		if stableControl {
			return "deploying the canary (control: stable, no baseline), then step 1 with split 0 until it is ready"
		}
		return "deploying baseline and canary, then step 1 with split 0 until they are ready"
	case rollout.Progressing:
		return fmt.Sprintf("setting the split of step %d/%d, then warm-up", st.Step+1, st.Steps)
	case rollout.Analyzing:
		var b strings.Builder
		if !st.NextAnalysisAt.IsZero() {
			b.WriteString("judge " + in(st.NextAnalysisAt))
		} else {
			b.WriteString("judge soon")
		}
		if spec != nil && st.Step < len(spec.Steps) && !st.StepStartedAt.IsZero() {
			end := st.StepStartedAt.Add(spec.Steps[st.Step].Duration)
			b.WriteString(" · step ends " + in(end) + " → " + after())
		} else {
			b.WriteString(" · then " + after())
		}
		return b.String()
	case rollout.Paused:
		kind := "paused"
		if st.Pause != nil {
			kind = st.Pause.Kind + " pause"
		}
		s := kind + ", split held until r, P or a"
		if spec != nil && spec.PauseTimeout > 0 && st.Pause != nil {
			s = kind + ", split held · rollback at pauseTimeout " + in(st.Pause.Since.Add(spec.PauseTimeout))
		}
		return s
	case rollout.Promoting:
		if stableControl {
			return "canary becomes stable at the gateway; old stable goes"
		}
		return "canary becomes stable at the gateway; baseline and old stable go"
	case rollout.RollingBack:
		if stableControl {
			return "removing the canary from the gateway: all traffic back to stable"
		}
		return "deleting canary and baseline targets: all traffic back to stable"
	}
	end := fmt.Sprintf("ended %s at %s", st.Phase, hms(st.FinishedAt))
	if m.cfg.ExitOnDone {
		return end
	}
	return end + " · q to leave"
}

// traffic renders the split as a bar and exact percentages.
func (m Model) traffic(w int) []string {
	s := m.st
	sp := m.snap.State.Split
	barW := max(w-2, 10)
	canary := cells(sp.Canary, barW)
	baseline := cells(sp.Baseline, barW)
	stable := max(barW-canary-baseline, 0)
	bar := s.stable.Render(strings.Repeat(glyphStable, stable)) +
		s.baseline.Render(strings.Repeat(glyphBaseline, baseline)) +
		s.canary.Render(strings.Repeat(glyphCanary, canary))
	legend := fmt.Sprintf("%s stable %s   %s baseline %s   %s canary %s",
		s.stable.Render(glyphStable), providers.Percent(sp.Stable()),
		s.baseline.Render(glyphBaseline), providers.Percent(sp.Baseline),
		s.canary.Render(glyphCanary), providers.Percent(sp.Canary))
	if m.snap.State.Control == rollout.ControlStable && sp.Baseline == 0 {
		legend = fmt.Sprintf("%s stable %s (the control, no baseline)   %s canary %s",
			s.stable.Render(glyphStable), providers.Percent(sp.Stable()),
			s.canary.Render(glyphCanary), providers.Percent(sp.Canary))
	}
	return []string{"▕" + bar + "▏", " " + legend}
}

// cells is the bar width of bp basis points: at least one cell for any traffic at all.
func cells(bp, width int) int {
	if bp <= 0 {
		return 0
	}
	return max(int(math.Round(float64(bp)*float64(width)/float64(providers.BasisPoints))), 1)
}

// lastJudged is the latest interval with metric results.
func lastJudged(ivs []rollout.Interval) *rollout.Interval {
	for i := len(ivs) - 1; i >= 0; i-- {
		if len(ivs[i].Metrics) > 0 {
			return &ivs[i]
		}
	}
	return nil
}

// metrics renders the last judgement: one row per metric.
func (m Model) metrics(w int) []string {
	s := m.st
	st := m.snap.State
	iv := lastJudged(st.Intervals)
	if iv == nil {
		return []string{s.bold.Render("metrics") + s.dim.Render(" · no judgement yet")}
	}
	cohorts := m.cohorts(iv, w)
	ctl := controlName(iv)
	requests := fmt.Sprintf(" · requests %s %d canary %d", ctl, iv.Baseline, iv.Canary)
	if cohorts != nil { // the cohort rows count them
		requests = ""
	}
	verdict := fmtScore(float64(iv.Score)) + " " + string(iv.Verdict)
	label := "score"
	if iv.Sequential != nil { // a sequential look: a verdict, no score
		verdict, label = string(iv.Verdict), "verdict"
	}
	title := fmt.Sprintf("%s · step %d interval %d%s · %s %s",
		s.bold.Render("metrics"), iv.Step+1, iv.Index, requests, label, s.verdict(iv.Verdict).Render(verdict))
	if iv.Final {
		title += " · final"
	}
	var why []string
	if iv.Reason != "" { // analysis.mode sequential: the look's sentence
		why = []string{s.dim.Render("why:  ") + ansi.Truncate(oneLine(iv.Reason), max(w-6, 20), "…")}
	}
	if iv.Ingest != nil { // kong-log: dropped entries, rejected posts
		why = append(why, s.dim.Render("log:  ")+ansi.Truncate(iv.Ingest.String(), max(w-6, 20), "…"))
	}
	wide := w >= 100
	cols := []int{12, 12, 12, 7, 17} // metric, baseline, canary, class, CI
	if wide {
		cols = []int{16, 14, 14, 7, 10, 22}
	}
	var hdr []string
	if wide {
		hdr = []string{"metric", ctl, "canary", "ratio", "class", "CI canary−" + ctl}
	} else {
		short := "base"
		if ctl != rollout.ControlBaseline {
			short = ctl
		}
		hdr = []string{"metric", ctl, "canary", "class", "CI canary−" + short}
	}
	row := func(cells []string, styles []lipgloss.Style) string {
		var b strings.Builder
		for i, c := range cells {
			txt := ansi.Truncate(c, cols[i]-1, "…")
			pad := strings.Repeat(" ", max(cols[i]-lipgloss.Width(txt), 0))
			if styles != nil {
				txt = styles[i].Render(txt)
			}
			b.WriteString(txt + pad)
		}
		return b.String()
	}
	lines := append([]string{title}, why...)
	lines = append(lines, cohorts...)
	lines = append(lines, s.dim.Render(row(hdr, nil)+"reason"))
	for _, mr := range iv.Metrics {
		cells, sty := m.metricCells(iv, mr, wide)
		head, reason := row(cells, sty), oneLine(mr.Reason)
		if m.height >= tallHeight && wide && mr.Classification != "Pass" {
			lines = append(lines, m.longReason(head, reason, w)...)
			continue
		}
		lines = append(lines, head+reason)
	}
	return append(lines, m.routes(iv, w)...) // analysis.routes: the worst routes
}

// metricCells are the cells of a metric's row and their styles.
func (m Model) metricCells(iv *rollout.Interval, mr rollout.MetricResult, wide bool) ([]string, []lipgloss.Style) {
	s := m.st
	unit, ciUnit := m.unit(mr.Name), m.unit(mr.Name)
	if d := seqDecision(iv, mr.Name); d != nil {
		// A sequential test compares shares of requests (%); its interval bounds their
		// difference, in percentage points.
		unit, ciUnit = cmp.Or(d.Unit, "%"), "pp"
	}
	b := fmt.Sprintf("%s (%d)", fmtValue(float64(mr.BaselineMean), unit), mr.BaselineCount)
	c := fmt.Sprintf("%s (%d)", fmtValue(float64(mr.CanaryMean), unit), mr.CanaryCount)
	if iv.Sequential != nil { // shares: as few digits as they need, so that the count fits too
		b = fmt.Sprintf("%s%s (%d)", fmtNum(float64(mr.BaselineMean)), unit, mr.BaselineCount)
		c = fmt.Sprintf("%s%s (%d)", fmtNum(float64(mr.CanaryMean)), unit, mr.CanaryCount)
	}
	if mr.BaselineCount == 0 && mr.CanaryCount == 0 { // nothing measured yet: no numbers to show
		b, c = "– (0)", "– (0)"
	}
	ci := "–"
	if mr.CILower != nil && mr.CIUpper != nil && (mr.BaselineCount > 0 || mr.CanaryCount > 0) {
		ci = fmt.Sprintf("[%s, %s]", fmtNum(float64(*mr.CILower)), fmtNum(float64(*mr.CIUpper))) + ciUnit
	}
	name := mr.Name
	if mr.Critical || m.critical(mr.Name) {
		name += "*"
	}
	plain := s.plain
	var cells []string
	var sty []lipgloss.Style
	if wide {
		cells = []string{name, b, c, fmtNum(float64(mr.Ratio)), mr.Classification, ci}
		sty = []lipgloss.Style{plain, plain, plain, plain, s.class(mr.Classification), plain}
	} else {
		cells = []string{name, b, c, mr.Classification, ci}
		sty = []lipgloss.Style{plain, plain, plain, s.class(mr.Classification), plain}
	}
	return cells, sty
}

// longReason is a row whose reason is not cut at the edge on a large screen: it breaks at a space
// and goes on over indented lines (at most reasonLines more).
func (m Model) longReason(head, reason string, w int) []string {
	s := m.st
	first, rest := splitAt(reason, max(w-lipgloss.Width(head), 8))
	lines := []string{head + first}
	if rest != "" {
		more := strings.Split(ansi.Wrap(rest, max(w-4, 20), " "), "\n")
		if len(more) > reasonLines {
			more = append(more[:reasonLines-1], ansi.Truncate(strings.Join(more[reasonLines-1:], " "), max(w-4, 20), "…"))
		}
		for _, l := range more {
			lines = append(lines, "    "+s.dim.Render(strings.TrimSpace(l)))
		}
	}
	return lines
}

// splitAt splits plain text s into a first part of at most n runes, broken at its last space when
// there is one in its second half, and the rest.
func splitAt(s string, n int) (first, rest string) {
	r := []rune(s)
	if len(r) <= n {
		return s, ""
	}
	cut := n
	for i := n; i > n/2; i-- {
		if r[i] == ' ' {
			cut = i
			break
		}
	}
	return string(r[:cut]), strings.TrimSpace(string(r[cut:]))
}

// tallHeight: from this height on, the reasons of metrics that did not pass are shown whole (up to
// reasonLines more lines each) instead of cut at the screen's edge.
const (
	tallHeight  = 40
	reasonLines = 3
)

// compactHeight: below it the cohort summaries take one line instead of two, leaving the score chart
// its threshold rows at 80x24.
const compactHeight = 32

// cohorts renders the interval's request summaries (request-based metrics sources); nil without them
// (Prometheus). On a short screen one line pairs the values as baseline|canary; otherwise one row
// per cohort with its traffic-bar glyph, aligned so that the two read as columns.
func (m Model) cohorts(iv *rollout.Interval, w int) []string {
	if len(iv.Cohorts) == 0 {
		return nil
	}
	s := m.st
	control, controlLabel := providers.Baseline, s.baseline.Render(glyphBaseline)+" baseline"
	if iv.Control == rollout.ControlStable {
		control, controlLabel = providers.Stable, s.stable.Render(glyphStable)+" stable  "
	}
	if m.height < compactHeight {
		line := cohortPairs(iv.Cohorts)
		legend := s.baseline.Render(glyphBaseline) + "|" + s.canary.Render(glyphCanary)
		if control == providers.Stable {
			legend = s.stable.Render(glyphStable) + "|" + s.canary.Render(glyphCanary)
		}
		if words := " " + string(control) + "|canary:"; lipgloss.Width(legend+words+" "+line) <= w {
			legend += words
		}
		return []string{legend + " " + line}
	}
	var out []string
	for _, c := range []struct {
		cohort providers.Cohort
		label  string
	}{
		{control, controlLabel},
		{providers.Canary, s.canary.Render(glyphCanary) + " canary  "},
	} {
		cs, ok := iv.Cohorts[c.cohort]
		if !ok {
			continue
		}
		out = append(out, fmt.Sprintf("%s %7d req · p50 %9s · p99 %9s · 5xx %7s", c.label, cs.Requests,
			fmtValue(float64(cs.P50Ms), "ms"), fmtValue(float64(cs.P99Ms), "ms"), fmtValue(float64(cs.ErrorRatePct), "%")))
	}
	return out
}

// controlName names the interval's control: baseline, or stable (analysis.control stable).
func controlName(iv *rollout.Interval) string {
	if iv.Control == rollout.ControlStable {
		return rollout.ControlStable
	}
	return rollout.ControlBaseline
}

// cohortPairs renders request summaries as control|canary pairs (the control is the baseline, or
// stable when the summaries hold stable's requests):
// "req 240|236 · p50 12.3|12.9ms · p99 31.2|1234.5ms · 5xx 0.00|0.42%"; – for what is unknown.
func cohortPairs(cohorts map[providers.Cohort]rollout.CohortStats) string {
	nan := rollout.Number(math.NaN())
	get := func(c providers.Cohort) (rollout.CohortStats, string) {
		cs, ok := cohorts[c]
		if !ok {
			return rollout.CohortStats{P50Ms: nan, P99Ms: nan, ErrorRatePct: nan}, "–"
		}
		return cs, fmt.Sprint(cs.Requests)
	}
	control := providers.Baseline
	if _, ok := cohorts[providers.Stable]; ok {
		control = providers.Stable
	}
	b, reqB := get(control)
	c, reqC := get(providers.Canary)
	pair := func(x, y rollout.Number, unit string) string { // 12.3|12.9ms, 12.3ms|–
		xs, ys := fmtValue(float64(x), unit), fmtValue(float64(y), unit)
		if !math.IsNaN(float64(y)) {
			xs = strings.TrimSuffix(xs, unit)
		}
		return xs + "|" + ys
	}
	return fmt.Sprintf("req %s|%s · p50 %s · p99 %s · 5xx %s", reqB, reqC,
		pair(b.P50Ms, c.P50Ms, "ms"), pair(b.P99Ms, c.P99Ms, "ms"), pair(b.ErrorRatePct, c.ErrorRatePct, "%"))
}

// critical reports whether the spec marks the metric critical.
func (m Model) critical(name string) bool {
	if m.cfg.Spec == nil {
		return false
	}
	for _, ms := range m.cfg.Spec.Analysis.Metrics {
		if ms.Name == name {
			return ms.Critical
		}
	}
	return false
}

func seqDecision(iv *rollout.Interval, name string) *sequential.Decision {
	if iv.Sequential == nil {
		return nil
	}
	for i := range iv.Sequential.Decisions {
		if iv.Sequential.Decisions[i].Metric == name {
			return &iv.Sequential.Decisions[i]
		}
	}
	return nil
}

func (m Model) unit(name string) string {
	if m.cfg.Spec == nil {
		return ""
	}
	for _, ms := range m.cfg.Spec.Analysis.Metrics {
		if ms.Name == name {
			switch ms.Kind {
			case providers.LatencyQuantile:
				return "ms"
			case providers.ErrorRate:
				return "%"
			}
		}
	}
	return ""
}

func (m Model) thresholds() (pass, marginal float64, ok bool) {
	if m.cfg.Spec == nil {
		return 0, 0, false
	}
	th := m.cfg.Spec.Analysis.Thresholds
	return th.Pass, th.Marginal, true
}

// sequential reports whether the rollout is judged by sequential looks (analysis.mode sequential):
// from its looks once there are some, else from the spec.
func (m Model) sequential() bool {
	for _, iv := range m.snap.State.Intervals {
		if iv.Sequential != nil {
			return true
		}
	}
	return m.cfg.Spec != nil && m.cfg.Spec.Analysis.Mode == rollout.ModeSequential
}

// chart renders the score history (in mode sequential: each look's progress toward a decision):
// title, rows of bars, step labels.
func (m Model) chart(w, rows int) []string {
	s := m.st
	if m.sequential() {
		title := s.bold.Render("evidence per look") +
			s.dim.Render(" · "+glyphTowardPass+" toward pass · "+glyphTowardRollback+" toward rollback · ─ decided")
		return append([]string{title}, renderChart(m.snap.State.Intervals, chartConfig{
			width: w, rows: rows, pass: 100, marginal: math.NaN(), styles: s, value: lookBar,
		})...)
	}
	pass, marginal, ok := m.thresholds()
	title := s.bold.Render("score per interval")
	if ok {
		title += s.dim.Render(fmt.Sprintf(" · pass ≥ %s (─) · fail ≤ %s (┈)", fmtScore(pass), fmtScore(marginal)))
	} else {
		pass, marginal = math.NaN(), math.NaN()
	}
	out := []string{title}
	return append(out, renderChart(m.snap.State.Intervals, chartConfig{
		width: w, rows: rows, pass: pass, marginal: marginal, styles: s,
	})...)
}

// events renders the latest events of this run.
func (m Model) events(w, n int) []string {
	s := m.st
	var evs []rollout.Event
	for _, ev := range m.snap.Events {
		if ev.RunID == m.snap.State.RunID {
			evs = append(evs, ev)
		}
	}
	lines := []string{s.bold.Render("events") + s.dim.Render(fmt.Sprintf(" · %d", len(evs)))}
	if k := len(evs) - (n - 1); k > 0 {
		evs = evs[k:]
	}
	for _, ev := range evs {
		lines = append(lines, s.dim.Render(hms(ev.Time))+" "+FormatEvent(ev))
	}
	return lines
}

func (m Model) statusLine(w int) string {
	s := m.st
	if m.mode == modeConfirm {
		q := fmt.Sprintf("Promote %s now, skipping the remaining steps? y/n", m.service())
		if m.confirm == rollout.ActionAbort {
			q = fmt.Sprintf("Abort %s: delete canary and baseline targets, all traffic to stable? y/n", m.service())
		}
		return s.ask.Render(q)
	}
	if m.status != "" {
		return s.warn.Render(m.status)
	}
	if m.snap.Err != nil {
		return s.bad.Render(oneLine(m.snap.Err.Error()))
	}
	return ""
}

func (m Model) service() string {
	if m.snap.State != nil {
		return m.snap.State.Service
	}
	return m.cfg.Service
}

func (m Model) keyHelp(w int) string {
	if m.mode == modeConfirm {
		return m.help.ShortHelpView(confirmKeys{m.keys}.ShortHelp())
	}
	return m.help.ShortHelpView(m.keys.ShortHelp())
}

func (m Model) fullHelp(w int) []string {
	s := m.st
	lines := []string{"", s.bold.Render("keys")}
	lines = append(lines, strings.Split(m.help.FullHelpView(m.keys.FullHelp()), "\n")...)
	lines = append(lines, "",
		"p r P a send the same request as canaryctl pause/resume/promote/abort;",
		"the rollout applies it within a tick. P and a ask first. q leaves the",
		"monitor only: the rollout goes on (canaryctl watch re-attaches).",
		"traffic: "+glyphStable+" stable "+glyphBaseline+" baseline "+glyphCanary+" canary. metrics: the last judgement's",
		"requests per cohort (P50, P99, 5xx; builtin and kong-log sources), then per",
		"metric its values (count); * critical. chart: each judgement's score",
		"against pass (─) and marginal (┈); × failed judgement, · no score yet.",
		"sequential mode: each look's evidence, on a log scale, toward passing the",
		"step ("+glyphTowardPass+") or rolling back ("+glyphTowardRollback+"); a bar at ─ decided it.",
		"", s.dim.Render("any key: back"))
	return lines
}

// FormatEvent renders an event on one line (without its time).
func FormatEvent(ev rollout.Event) string {
	switch ev.Type {
	case rollout.EvTransition:
		s := fmt.Sprintf("%s → %s", ev.From, ev.Phase)
		if ev.Reason != "" {
			s += ": " + oneLine(ev.Reason)
		}
		return s
	case rollout.EvInterval:
		if iv := ev.Interval; iv != nil {
			s := fmt.Sprintf("judged step %d interval %d: ", iv.Step+1, iv.Index)
			if iv.Verdict == rollout.VerdictError {
				return s + "error: " + oneLine(iv.Error)
			}
			ctl := controlName(iv)
			if iv.Reason != "" { // analysis.mode sequential: no score, a sentence
				return s + fmt.Sprintf("%s (requests %s %d canary %d): %s", iv.Verdict, ctl, iv.Baseline, iv.Canary, oneLine(iv.Reason))
			}
			return s + fmt.Sprintf("score %s %s (requests %s %d canary %d)", fmtScore(float64(iv.Score)), iv.Verdict, ctl, iv.Baseline, iv.Canary)
		}
	case rollout.EvControl:
		if c := ev.Control; c != nil {
			s := fmt.Sprintf("%s by %s", c.Action, c.By)
			if ev.Reason != "" {
				s += ": " + oneLine(ev.Reason)
			}
			return s
		}
	case rollout.EvIntent:
		if in := ev.Intent; in != nil {
			switch {
			case in.Split != nil:
				return fmt.Sprintf("gateway %s %s", in.Op, in.Split)
			case in.Cohort != "":
				return fmt.Sprintf("gateway %s %s %s", in.Op, in.Cohort, strings.Join(in.Addrs, ","))
			}
			return "gateway " + in.Op
		}
	}
	s := ev.Type
	if ev.Reason != "" {
		s += ": " + oneLine(ev.Reason)
	}
	return s
}

func fmtScore(f float64) string {
	if math.IsNaN(f) {
		return "–"
	}
	return fmt.Sprintf("%.4g", f)
}

func fmtNum(f float64) string {
	switch {
	case math.IsNaN(f):
		return "–"
	case f != 0 && math.Abs(f) < 0.01:
		return fmt.Sprintf("%.1e", f)
	}
	return fmt.Sprintf("%.3g", f)
}

func fmtValue(f float64, unit string) string {
	if math.IsNaN(f) {
		return "–"
	}
	switch unit {
	case "%":
		return fmt.Sprintf("%.2f%%", f)
	case "ms":
		return fmt.Sprintf("%.1fms", f)
	}
	return fmtNum(f)
}

// hms is a time of day in UTC.
func hms(t time.Time) string {
	if t.IsZero() {
		return "--:--:--"
	}
	return t.UTC().Format("15:04:05")
}

// clock renders a duration as m:ss or h:mm:ss.
func clock(d time.Duration) string {
	sec := int(d / time.Second)
	if sec >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", sec/3600, sec/60%60, sec%60)
	}
	return fmt.Sprintf("%d:%02d", sec/60, sec%60)
}
