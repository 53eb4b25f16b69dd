package rollout

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
)

// staticLog returns its requests whatever the window (the window is the caller's business here).
type staticLog []providers.Request

func (l staticLog) Requests(context.Context, time.Time, time.Time) ([]providers.Request, error) {
	return l, nil
}

// flatSeries gives every metric one equal point per cohort: the judge passes, the test looks at the
// cohort summaries only.
func flatSeries([]providers.Request, providers.Metric, providers.Window) (providers.Pair, error) {
	return providers.Pair{Baseline: []float64{1}, Canary: []float64{1}}, nil
}

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func closeTo(got Number, want, tol float64) bool {
	return math.Abs(float64(got)-want) <= tol
}

// TestRequestMetricsCohorts: reference percentiles from R 4.3,
// quantile(1:100, c(.5, .99), type = 7) = 50.5, 99.01 and quantile(c(10, 30), c(.5, .99), type = 7)
// = 20, 29.8.
func TestRequestMetricsCohorts(t *testing.T) {
	t.Parallel()
	var hundred staticLog
	for i := 1; i <= 100; i++ {
		st := 200
		if i%25 == 0 {
			st = 503
		}
		hundred = append(hundred, providers.Request{Cohort: providers.Canary, Status: st, Latency: ms(float64(i))})
	}
	cases := []struct {
		name           string
		log            staticLog
		baseline, cary CohortStats
	}{
		{
			name:     "R-7 percentiles and the 5xx rate",
			log:      hundred,
			baseline: CohortStats{P50Ms: Number(math.NaN()), P99Ms: Number(math.NaN()), ErrorRatePct: Number(math.NaN())},
			cary:     CohortStats{Requests: 100, P50Ms: 50.5, P99Ms: 99.01, ErrorRatePct: 4},
		},
		{
			name: "rule-routed and stable requests are left out; 502 counts as 5xx, 499 not",
			log: staticLog{
				{Cohort: providers.Baseline, Status: 200, Latency: ms(10)},
				{Cohort: providers.Baseline, Status: 502, Latency: ms(30)},
				{Cohort: providers.Baseline, Status: 500, Latency: ms(5000), ByRule: true},
				{Cohort: providers.Canary, Status: 499, Latency: ms(7)},
				{Cohort: providers.Canary, Status: 200, Latency: ms(9000), ByRule: true},
				{Cohort: providers.Stable, Status: 500, Latency: ms(1)},
			},
			baseline: CohortStats{Requests: 2, P50Ms: 20, P99Ms: 29.8, ErrorRatePct: 50},
			cary:     CohortStats{Requests: 1, P50Ms: 7, P99Ms: 7, ErrorRatePct: 0},
		},
		{
			name:     "no requests",
			baseline: CohortStats{P50Ms: Number(math.NaN()), P99Ms: Number(math.NaN()), ErrorRatePct: Number(math.NaN())},
			cary:     CohortStats{P50Ms: Number(math.NaN()), P99Ms: Number(math.NaN()), ErrorRatePct: Number(math.NaN())},
		},
	}
	same := func(a, b Number) bool {
		return math.IsNaN(float64(a)) && math.IsNaN(float64(b)) || closeTo(a, float64(b), 1e-9)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rm, err := NewRequestMetrics(RequestMetricsConfig{Log: tc.log, Series: flatSeries})
			if err != nil {
				t.Fatal(err)
			}
			got, err := rm.Cohorts(t.Context(), providers.Window{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 {
				t.Fatalf("cohorts %v, want baseline and canary only", got)
			}
			for c, want := range map[providers.Cohort]CohortStats{providers.Baseline: tc.baseline, providers.Canary: tc.cary} {
				g := got[c]
				if g.Requests != want.Requests || !same(g.P50Ms, want.P50Ms) || !same(g.P99Ms, want.P99Ms) || !same(g.ErrorRatePct, want.ErrorRatePct) {
					t.Errorf("%s: got %+v, want %+v", c, g, want)
				}
			}
			// the counts agree with Samples
			b, c, err := rm.Samples(t.Context(), providers.Window{})
			if err != nil || b != got[providers.Baseline].Requests || c != got[providers.Canary].Requests {
				t.Errorf("Samples %d/%d (%v), Cohorts %d/%d", b, c, err, got[providers.Baseline].Requests, got[providers.Canary].Requests)
			}
		})
	}
}

// TestCohortStatsJSON: percentiles without requests are null; an interval without summaries (Prometheus)
// has no cohorts key.
func TestCohortStatsJSON(t *testing.T) {
	t.Parallel()
	var tl cohortTallies
	tl.add(providers.Canary, 12.5, true)
	iv := Interval{Score: Number(math.NaN()), Cohorts: tl.stats()}
	b, err := json.Marshal(iv)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"cohorts":{`,
		`"baseline":{"requests":0,"p50Ms":null,"p99Ms":null,"errorRatePercent":null}`,
		`"canary":{"requests":1,"p50Ms":12.5,"p99Ms":12.5,"errorRatePercent":100}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	var back Interval
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if c := back.Cohorts[providers.Canary]; c.Requests != 1 || c.P99Ms != 12.5 || !math.IsNaN(float64(back.Cohorts[providers.Baseline].P50Ms)) {
		t.Errorf("round trip: %+v", back.Cohorts)
	}
	b, err = json.Marshal(Interval{Score: 1})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "cohorts") {
		t.Errorf("interval without summaries writes cohorts: %s", b)
	}
}

// TestCohortTallyBound: past maxCohortLatencies the kept latencies stay bounded and remain a uniform
// sample (percentiles of uniform [0,1) values near their true values); counts stay exact.
func TestCohortTallyBound(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var tl cohortTally
	n := 3 * maxCohortLatencies
	for i := range n {
		// the first third is all small: a reservoir that kept only early values would show it
		x := rng.Float64()
		if i < maxCohortLatencies {
			x *= 0.1
		}
		tl.add(x, i%100 == 0)
	}
	if len(tl.lat) != maxCohortLatencies {
		t.Fatalf("kept %d latencies, want %d", len(tl.lat), maxCohortLatencies)
	}
	st := tl.stats()
	failed := (n + 99) / 100 // i % 100 == 0
	if st.Requests != n || !closeTo(st.ErrorRatePct, 100*float64(failed)/float64(n), 1e-9) {
		t.Errorf("requests %d rate %v, want %d and %d failed", st.Requests, st.ErrorRatePct, n, failed)
	}
	// the mixture, 1/3 uniform on [0, 0.1) and 2/3 uniform on [0, 1), has the CDF 1/3 + 2/3*x above
	// 0.1: P50 solves 1/3 + 2/3*x = 0.5 (x = 0.25), P99 1/3 + 2/3*x = 0.99 (x = 0.985)
	if !closeTo(st.P50Ms, 0.25, 0.01) || !closeTo(st.P99Ms, 0.985, 0.003) {
		t.Errorf("P50 %v P99 %v, want about 0.25 and 0.985", st.P50Ms, st.P99Ms)
	}
}

// TestIntervalCohortsKayenta: a Kayenta interval over a request log carries the cohort summaries of its
// window, and its sample counts are theirs.
func TestIntervalCohortsKayenta(t *testing.T) {
	t.Parallel()
	gw := fake.NewGateway()
	log := newSynthLog(gw, 400, 0.005, 5)
	rm, err := NewRequestMetrics(RequestMetricsConfig{Log: log, Series: flatSeries})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, testSpec(), func(c *Config) { c.Metrics = rm; c.Gateway = gw })
	st := h.runUntil(2000, func(st State) bool { return len(st.Intervals) > 0 })
	iv := st.Intervals[0]
	if iv.Verdict == VerdictError {
		t.Fatalf("interval error: %s", iv.Error)
	}
	checkCohorts(t, iv, 0.5)
	// 400/s at 2.5% for the 30 s after the warm-up: about 300 requests each
	if iv.Canary < 150 || iv.Baseline < 150 {
		t.Errorf("requests baseline %d canary %d, want about 300 each", iv.Baseline, iv.Canary)
	}
}

// TestIntervalCohortsSequential: every recorded look carries the step's cohort summaries so far; the
// failing look of a 10%-5xx canary shows it.
func TestIntervalCohortsSequential(t *testing.T) {
	t.Parallel()
	gw := fake.NewGateway()
	log := newSynthLog(gw, 400, 0.10, 6)
	h := newHarness(t, seqSpec(), func(c *Config) { c.Requests = log; c.Gateway = gw })
	st := h.runUntil(5000, terminal)
	if st.Phase != RolledBack {
		t.Fatalf("phase %s: %s", st.Phase, st.Reason)
	}
	last := st.Intervals[len(st.Intervals)-1]
	if last.Verdict != VerdictFail {
		t.Fatalf("last interval %s, want the failing look", last.Verdict)
	}
	checkCohorts(t, last, 10)
	for _, iv := range st.Intervals {
		if iv.Verdict != VerdictError && (iv.Cohorts[providers.Canary].Requests != iv.Canary || iv.Cohorts[providers.Baseline].Requests != iv.Baseline) {
			t.Errorf("interval %d/%d: cohorts %+v, requests baseline %d canary %d", iv.Step, iv.Index, iv.Cohorts, iv.Baseline, iv.Canary)
		}
	}
}

// checkCohorts: the summaries agree with the interval's counts and with synthLog's traffic (log-normal
// latencies with median 80 ms and sigma 0.45: P99 = 80*exp(0.45*2.326) = 228 ms; baseline 0.5% 5xx,
// canary canaryPct).
func checkCohorts(t *testing.T, iv Interval, canaryPct float64) {
	t.Helper()
	b, c := iv.Cohorts[providers.Baseline], iv.Cohorts[providers.Canary]
	if b.Requests != iv.Baseline || c.Requests != iv.Canary || b.Requests == 0 || c.Requests == 0 {
		t.Fatalf("cohorts %+v, requests baseline %d canary %d", iv.Cohorts, iv.Baseline, iv.Canary)
	}
	for name, s := range map[string]CohortStats{"baseline": b, "canary": c} {
		// a rough 4-sigma band: the median's standard error is about 1.25*80*0.45/sqrt(n) ms
		if tol := 4 * 1.25 * 80 * 0.45 / math.Sqrt(float64(s.Requests)); !closeTo(s.P50Ms, 80, tol) {
			t.Errorf("%s: P50 %v of %d requests, want 80 ms within %.0f", name, s.P50Ms, s.Requests, tol)
		}
		if s.Requests >= 200 && !closeTo(s.P99Ms, 228, 100) || s.P99Ms < s.P50Ms {
			t.Errorf("%s: P99 %v (P50 %v) of %d requests, want about 228 ms", name, s.P99Ms, s.P50Ms, s.Requests)
		}
	}
	band := func(p float64, n int) float64 { return 100 * (4*math.Sqrt(p*(1-p)/float64(n)) + 0.01) }
	if !closeTo(b.ErrorRatePct, 0.5, band(0.005, b.Requests)) || !closeTo(c.ErrorRatePct, canaryPct, band(canaryPct/100, c.Requests)) {
		t.Errorf("5xx baseline %v%% of %d canary %v%% of %d, want about 0.5%% and %v%%", b.ErrorRatePct, b.Requests, c.ErrorRatePct, c.Requests, canaryPct)
	}
}
