package rollout

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
)

// TestTooFewPointsWaitForTheFinalInterval: Mann-Whitney on one or two points per cohort is noise, so an
// interval before the step's last is not judged on fewer than minJudgePoints; the final one is.
func TestTooFewPointsWaitForTheFinalInterval(t *testing.T) {
	t.Parallel()
	t.Run("sparse bad canary is judged at the step's final interval", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil)
		h.metrics.Set(fake.Worse(minJudgePoints-1, "5xx-rate", 3))
		if p := h.finish(); p != RolledBack {
			t.Fatalf("phase %s, want RolledBack", p)
		}
		st := h.eng.State()
		var verdicts []Verdict
		for _, iv := range st.Intervals {
			verdicts = append(verdicts, iv.Verdict)
		}
		want := []Verdict{VerdictNeedMoreData, VerdictNeedMoreData, VerdictFail}
		if len(verdicts) != len(want) || verdicts[0] != want[0] || verdicts[1] != want[1] || verdicts[2] != want[2] {
			t.Fatalf("verdicts %v, want %v", verdicts, want)
		}
		if !st.Intervals[2].Final {
			t.Errorf("the failing interval is not the step's final one")
		}
		if r := st.Intervals[0].Reason; !strings.Contains(r, "2 baseline and 2 canary points") {
			t.Errorf("reason %q does not say how many points there were", r)
		}
		if !strings.Contains(h.progress.String(), "need-more-data | not judged yet") {
			t.Errorf("progress does not show the unjudged interval:\n%s", h.progress.String())
		}
		if st.ConsecutiveErrors != 0 {
			t.Errorf("unjudged intervals counted as errors: %d", st.ConsecutiveErrors)
		}
	})
	t.Run("one noisy point does not roll back a canary that turns out fine", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil)
		var calls atomic.Int64
		worse, same := fake.Worse(1, "p99-latency", 5), fake.Same(10)
		h.metrics.Set(func(m providers.Metric, w providers.Window) (providers.Pair, error) {
			if calls.Add(1) <= 2 { // the first interval's two metrics
				return worse(m, w)
			}
			return same(m, w)
		})
		if p := h.finish(); p != Promoted {
			t.Fatalf("phase %s (%s), want Promoted", p, h.eng.State().Reason)
		}
		if v := h.eng.State().Intervals[0].Verdict; v != VerdictNeedMoreData {
			t.Errorf("first interval verdict %s, want %s", v, VerdictNeedMoreData)
		}
	})
}
