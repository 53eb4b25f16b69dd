package tui

import (
	"math"
	"strings"
	"testing"

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
