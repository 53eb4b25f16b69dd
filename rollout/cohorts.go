package rollout

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/canaryctl/canaryctl/analysis"
	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

// CohortStats summarizes the requests one cohort served in an interval's window: how many, their
// latency P50 and P99 in ms (R-7, analysis.Percentile) and the share answered 5xx (or not at all:
// 502), in %. Only request-based metrics sources (builtin, kong-log) give it; requests routed by a
// rule are left out, as from the comparison. The percentiles are null without requests.
type CohortStats struct {
	Requests     int    `json:"requests"`
	P50Ms        Number `json:"p50Ms"`
	P99Ms        Number `json:"p99Ms"`
	ErrorRatePct Number `json:"errorRatePercent"`
}

// CohortSummarizer is optionally implemented by a Metrics source with per-request data: it
// summarizes the requests the control (baseline, or stable with analysis.control stable) and the
// canary served in a window, keyed by their cohorts (Interval.Cohorts; the interval's sample counts
// come from it too).
type CohortSummarizer interface {
	Cohorts(ctx context.Context, w providers.Window) (map[providers.Cohort]CohortStats, error)
}

// Cohorts reads the window's requests and summarizes the control and the canary.
func (r *RequestMetrics) Cohorts(ctx context.Context, w providers.Window) (map[providers.Cohort]CohortStats, error) {
	reqs, err := r.cfg.Log.Requests(ctx, w.Start, w.End)
	if err != nil {
		return nil, fmt.Errorf("read request log: %w", err)
	}
	t := cohortTallies{control: r.cfg.Control}
	for _, q := range reqs {
		if q.ByRule {
			continue
		}
		t.add(q.Cohort, float64(q.Latency)/float64(time.Millisecond), q.Status >= 500)
	}
	return t.stats(), nil
}

// maxCohortLatencies bounds the latencies kept per cohort (2 MiB each): a sequential step keeps
// its cohorts' latencies for its whole bake. Past the bound, a uniform sample of this size
// (reservoir sampling, seeded) gives the percentiles; counts and the 5xx rate stay exact.
const maxCohortLatencies = 1 << 18

// cohortTally accumulates one cohort's requests.
type cohortTally struct {
	requests, failed int
	lat              []float64 // ms; at most maxCohortLatencies
	rng              *rand.Rand
}

func (t *cohortTally) add(ms float64, failed bool) {
	t.requests++
	if failed {
		t.failed++
	}
	if len(t.lat) < maxCohortLatencies {
		t.lat = append(t.lat, ms)
		return
	}
	if t.rng == nil {
		t.rng = rand.New(rand.NewPCG(1, 2))
	}
	// Algorithm R: the i-th request replaces a kept one with probability k/i.
	if j := t.rng.IntN(t.requests); j < maxCohortLatencies {
		t.lat[j] = ms
	}
}

func (t *cohortTally) stats() CohortStats {
	p := analysis.Percentiles(t.lat, 50, 99)
	rate := math.NaN()
	if t.requests > 0 {
		rate = 100 * float64(t.failed) / float64(t.requests)
	}
	return CohortStats{Requests: t.requests, P50Ms: Number(p[0]), P99Ms: Number(p[1]), ErrorRatePct: Number(rate)}
}

// cohortTallies accumulates the control's and the canary's requests; the control is the baseline
// (or stable with analysis.control stable: control set to providers.Stable); other cohorts'
// requests are not kept.
type cohortTallies struct {
	control          providers.Cohort // "" = baseline
	baseline, canary cohortTally      // baseline: the control's
}

func (t *cohortTallies) controlCohort() providers.Cohort {
	if t.control == "" {
		return providers.Baseline
	}
	return t.control
}

func (t *cohortTallies) add(c providers.Cohort, ms float64, failed bool) {
	switch c {
	case t.controlCohort():
		t.baseline.add(ms, failed)
	case providers.Canary:
		t.canary.add(ms, failed)
	}
}

func (t *cohortTallies) stats() map[providers.Cohort]CohortStats {
	return map[providers.Cohort]CohortStats{t.controlCohort(): t.baseline.stats(), providers.Canary: t.canary.stats()}
}

// observe adds a sequential look's batch (requests routed by a rule are already left out; its
// Baseline side is the control's).
func (t *cohortTallies) observe(b sequential.Batch) {
	for _, s := range b.Baseline {
		t.baseline.add(s.LatencyMS, s.Failed)
	}
	for _, s := range b.Canary {
		t.canary.add(s.LatencyMS, s.Failed)
	}
}
