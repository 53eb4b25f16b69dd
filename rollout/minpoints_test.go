package rollout

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
)

// TestTooFewPointsAreNotEvidence: with fewer points than the exact Mann-Whitney test needs to reject
// anything at the judge's 98% (2/C(n+m,n) > 0.02: 4 and 4 points are too few, 5 and 5 enough), an
// interval is not judged, and a step whose final interval still has too few pauses for more data
// (exit 4) instead of passing or failing on noise. (The engine used to judge the final interval on
// any number of points: two points each passed or failed on Kayenta's interval clamped to the range
// of the data.)
func TestTooFewPointsAreNotEvidence(t *testing.T) {
	t.Parallel()
	t.Run("sparse bad canary pauses for more data at the step's end", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil)
		h.metrics.Set(fake.Worse(4, "5xx-rate", 3))
		st := h.runUntil(1000, func(st State) bool { return st.Phase == Paused })
		if st.Phase != Paused || st.Pause == nil || st.Pause.Kind != PauseNeedMoreData || st.Step != 0 {
			t.Fatalf("phase %s step %d pause %+v: %s; want a need-more-data pause in step 1", st.Phase, st.Step, st.Pause, st.Reason)
		}
		for _, iv := range st.Intervals {
			if iv.Verdict != VerdictNeedMoreData {
				t.Errorf("interval %d judged %s on 4 points per cohort", iv.Index, iv.Verdict)
			}
		}
		if r := st.Reason; !strings.Contains(r, "not enough data for this step") || !strings.Contains(r, "4 baseline and 4 canary points") ||
			!strings.Contains(r, "5 and 5 points are enough") || !strings.Contains(r, "canaryctl promote") {
			t.Errorf("pause reason %q should say why, with the numbers and what to do", r)
		}
		if !strings.Contains(h.progress.String(), "need-more-data | not judged") {
			t.Errorf("progress does not show the unjudged interval:\n%s", h.progress.String())
		}
		if st.ConsecutiveErrors != 0 {
			t.Errorf("unjudged intervals counted as errors: %d", st.ConsecutiveErrors)
		}
	})
	t.Run("five points per cohort are judged", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testSpec(), nil)
		h.metrics.Set(fake.Worse(5, "5xx-rate", 3))
		if p := h.finish(); p != RolledBack {
			t.Fatalf("phase %s (%s), want RolledBack", p, h.eng.State().Reason)
		}
		if v := h.eng.State().Intervals[0].Verdict; v != VerdictFail {
			t.Errorf("first interval %s, want fail", v)
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
