package tui

import (
	"math"
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/rollout"
)

// TestViewShowsTheSequentialSentence: in analysis.mode sequential an interval has no score but a
// sentence (Reason) and one row per test; the monitor and the event log show the sentence.
func TestViewShowsTheSequentialSentence(t *testing.T) {
	t.Parallel()
	st := analyzingState()
	const why = "need more data: 480 request pairs, no regression shown, not yet within every margin"
	st.Intervals = append(st.Intervals, rollout.Interval{Step: 1, Index: 3, At: at(22), Score: rollout.Number(math.NaN()),
		Verdict: rollout.VerdictNeedMoreData, Baseline: 480, Canary: 480, Reason: why,
		Metrics: []rollout.MetricResult{{Name: "5xx-rate", Classification: "Undecided", BaselineCount: 480, CanaryCount: 480,
			Reason: "5xx rate canary 0.21% (1/480) vs baseline 0.42% (2/480) over 480 request pairs: difference -0.21 pp"}}})
	m := withSnapshot(newTestModel(nil, nil), st)
	m.width, m.height = 160, 50
	v := m.View()
	for _, want := range []string{"step 2 interval 3", "why:  " + why, "Undecided", "5xx rate canary 0.21% (1/480)"} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}
	iv := st.Intervals[len(st.Intervals)-1]
	line := FormatEvent(rollout.Event{Type: rollout.EvInterval, Interval: &iv})
	if !strings.Contains(line, "need-more-data (requests baseline 480 canary 480): "+why) || strings.Contains(line, "score") {
		t.Errorf("event line %q", line)
	}
}

// TestLookProgress: a look's bar is its tests' evidence on the log scale of their thresholds
// (1/(1-level)): toward a rollback, the strongest evidence of any test; toward passing, the weakest of
// the paired tests (all must pass); the larger side wins, and a decided test is 100.
func TestLookProgress(t *testing.T) {
	t.Parallel()
	const lo, up = 0.99, 0.95 // fail at e = 100, pass at e = 20
	paired := func(v sequential.Verdict, e, pe float64) sequential.Decision {
		return sequential.Decision{Metric: sequential.MetricErrors, Verdict: v, LowerLevel: lo, UpperLevel: up, EValue: e, PassEValue: pe}
	}
	guard := func(v sequential.Verdict, e float64) sequential.Decision {
		return sequential.Decision{Metric: sequential.MetricGuard, Verdict: v, LowerLevel: lo, EValue: e}
	}
	cases := []struct {
		name   string
		ds     []sequential.Decision
		want   float64
		toward rollout.Verdict
	}{
		{"no tests", nil, 0, rollout.VerdictNeedMoreData},
		{"no evidence either way", []sequential.Decision{paired(sequential.NeedMoreData, 0.5, 1), guard(sequential.NeedMoreData, 0.2)}, 0, rollout.VerdictNeedMoreData},
		{"weak evidence has no direction", []sequential.Decision{paired(sequential.NeedMoreData, 1.5, 1)}, 100 * math.Log(1.5) / math.Log(100), rollout.VerdictNeedMoreData},
		{"half way to a rollback", []sequential.Decision{paired(sequential.NeedMoreData, 10, 1)}, 50, rollout.VerdictFail},
		{"the guard failed", []sequential.Decision{paired(sequential.NeedMoreData, 1, 10), guard(sequential.Fail, 3)}, 100, rollout.VerdictFail},
		{"the weakest paired test sets the pass side", []sequential.Decision{paired(sequential.Pass, 1, 30), paired(sequential.NeedMoreData, 1, math.Sqrt(20))}, 50, rollout.VerdictPass},
		{"every paired test passed", []sequential.Decision{paired(sequential.Pass, 1, 25), paired(sequential.Pass, 1, 21), guard(sequential.NeedMoreData, 0.5)}, 100, rollout.VerdictPass},
		{"the larger side wins", []sequential.Decision{paired(sequential.NeedMoreData, 10, math.Pow(20, 0.75))}, 75, rollout.VerdictPass},
		{"evidence beyond the threshold is capped", []sequential.Decision{paired(sequential.NeedMoreData, 1e6, 1)}, 100, rollout.VerdictFail},
		{"non-finite e-values are no evidence", []sequential.Decision{paired(sequential.NeedMoreData, math.Inf(1), math.NaN())}, 0, rollout.VerdictNeedMoreData},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, toward := lookProgress(&sequential.Report{Decisions: tc.ds})
			if math.Abs(got-tc.want) > 1e-9 || toward != tc.toward {
				t.Errorf("lookProgress = %.4g toward %s, want %.4g toward %s", got, toward, tc.want, tc.toward)
			}
		})
	}
}

// TestSequentialChart: looks are drawn by their evidence, toward passing with blocks and toward a
// rollback with shades (readable without colors), under a "decided" line; the score chart's pass and
// marginal lines are not drawn.
func TestSequentialChart(t *testing.T) {
	t.Parallel()
	rep := func(e, pe float64) *sequential.Report {
		return &sequential.Report{Decisions: []sequential.Decision{{Metric: sequential.MetricErrors, LowerLevel: 0.99, UpperLevel: 0.95, EValue: e, PassEValue: pe}}}
	}
	ivs := []rollout.Interval{
		{Step: 0, Score: rollout.Number(math.NaN()), Verdict: rollout.VerdictNeedMoreData, Sequential: rep(1, 20)},
		{Step: 0, Score: rollout.Number(math.NaN()), Verdict: rollout.VerdictNeedMoreData, Sequential: rep(100, 1)},
		{Step: 1, Score: rollout.Number(math.NaN()), Verdict: rollout.VerdictError},
	}
	lines := renderChart(ivs, chartConfig{width: 40, rows: 2, pass: 100, marginal: math.NaN(), styles: newStyles(PlainRenderer()), value: lookBar})
	for i, w := range []string{
		"100┤" + "██─" + "▒▒─" + "───",
		"  0┤" + "██ " + "▒▒ " + "×× ",
	} {
		if lines[i] != w {
			t.Errorf("line %d = %q, want %q\n%s", i, lines[i], w, strings.Join(lines, "\n"))
		}
	}
	m := withSnapshot(newTestModel(nil, nil), sequentialState())
	m.width, m.height = 100, 40
	v := m.View()
	if !strings.Contains(v, "evidence per look") || strings.Contains(v, "score per interval") {
		t.Errorf("a sequential rollout's chart should show evidence, not scores:\n%s", v)
	}
}
