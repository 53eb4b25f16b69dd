package cmd

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/rollout"
)

// TestStatusShowsTheSequentialVerdict: in analysis.mode sequential there is no score; status shows
// the last look's verdict and sentence instead.
func TestStatusShowsTheSequentialVerdict(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	const why = "need more data: 480 request pairs, no regression shown, not yet within every margin; about 900 more requests per cohort needed"
	st := &rollout.State{Service: "checkout", RunID: "r1", Phase: rollout.Analyzing, Steps: 3, Weights: []float64{2.5, 10, 100},
		Verdict: rollout.VerdictNeedMoreData, UpdatedAt: now,
		Intervals: []rollout.Interval{{Step: 0, Index: 1, At: now, Score: rollout.Number(math.NaN()), Verdict: rollout.VerdictNeedMoreData, Reason: why}}}
	out := formatStatus(st, true, 42, now)
	// the sentence starts with the verdict: said once ("last look: fail: fail: ..." before)
	if !strings.Contains(out, "last look: "+why+"\n") || strings.Contains(out, "score:") {
		t.Errorf("status:\n%s", out)
	}
}
