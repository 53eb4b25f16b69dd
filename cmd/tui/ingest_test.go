package tui

import (
	"math"
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

// TestViewShowsRequestLogLosses: an interval whose kong-log receiver dropped entries or rejected
// posts says so on its own line, not cut off the end of the sentence.
func TestViewShowsRequestLogLosses(t *testing.T) {
	t.Parallel()
	st := analyzingState()
	rejected := &providers.Ingest{RejectedPosts: 3}
	judged := st.Intervals[len(st.Intervals)-1]
	judged.Index, judged.Ingest, judged.Reason = 3, rejected, "request log: "+rejected.String()
	st.Intervals = append(st.Intervals, judged)
	m := withSnapshot(newTestModel(nil, nil), st)
	m.width, m.height = 160, 50
	if v := m.View(); !strings.Contains(v, "log:  3 posts rejected (no or wrong Authorization header)") {
		t.Errorf("view lacks the losses line:\n%s", v)
	}
	dropped := &providers.Ingest{DroppedEntries: 1200}
	iv := rollout.Interval{Step: 1, Index: 4, At: at(22), Score: rollout.Number(math.NaN()),
		Verdict: rollout.VerdictNeedMoreData, Reason: "not judged: the request log is incomplete; request log: " + dropped.String(), Ingest: dropped}
	if line := FormatEvent(rollout.Event{Type: rollout.EvInterval, Interval: &iv}); !strings.Contains(line, "1200 entries dropped by the receiver") {
		t.Errorf("event line %q lacks the dropped entries", line)
	}
}
