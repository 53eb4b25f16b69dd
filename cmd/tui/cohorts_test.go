package tui

import (
	"math"
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

// sequentialState is step 1 of 3 in analysis.mode sequential after three recorded looks, the last
// one undecided; its texts follow analysis/sequential's explanations.
func sequentialState() *rollout.State {
	split := providers.Split{Canary: 250, Baseline: 250}
	nan := rollout.Number(math.NaN())
	// the analyzer's report of a look: evidence of no regression (pass e-values) growing with n
	report := func(n int, pass5xx, passTail float64) *sequential.Report {
		const fail, pass = 1 - 0.01/3, 0.95 // confidence levels: fail at 1/(1-level)
		d := func(metric string, v sequential.Verdict, e, pe float64) sequential.Decision {
			return sequential.Decision{Metric: metric, Verdict: v, Canary: int64(n), Baseline: int64(n),
				LowerLevel: fail, UpperLevel: pass, EValue: e, PassEValue: pe}
		}
		guard := sequential.Decision{Metric: sequential.MetricGuard, Verdict: sequential.NeedMoreData, LowerLevel: 0.999, EValue: 0.21}
		return &sequential.Report{Verdict: sequential.NeedMoreData, CanaryRequests: int64(n), BaselineRequests: int64(n),
			Decisions: []sequential.Decision{d(sequential.MetricErrors, sequential.NeedMoreData, 0.8, pass5xx), guard,
				d(sequential.MetricMedian, sequential.Pass, 0.3, 25), d(sequential.MetricTail, sequential.NeedMoreData, 1.1, passTail)}}
	}
	look := func(idx int, sec float64, n int, v rollout.Verdict, reason string, cohorts map[providers.Cohort]rollout.CohortStats, ms []rollout.MetricResult, seq *sequential.Report) rollout.Interval {
		return rollout.Interval{Step: 0, Index: idx, At: at(sec), Start: at(2), End: at(sec), Split: split, Baseline: n, Canary: n,
			Score: nan, Verdict: v, Reason: reason, Metrics: ms, Cohorts: cohorts, Sequential: seq}
	}
	cohorts := map[providers.Cohort]rollout.CohortStats{
		providers.Baseline: {Requests: 431, P50Ms: 80.4, P99Ms: 231.9, ErrorRatePct: 100 * 1.0 / 431},
		providers.Canary:   {Requests: 428, P50Ms: 84.2, P99Ms: 240.6, ErrorRatePct: 100 * 2.0 / 428},
	}
	metrics := []rollout.MetricResult{
		{Name: "5xx-rate", Group: "5xx-rate", Classification: "Undecided", BaselineMean: 0.23, CanaryMean: 0.47, BaselineCount: 428, CanaryCount: 428,
			Ratio: 2.04, CILower: num(-1.9), CIUpper: num(2.41), Estimate: num(0.23),
			Reason: "5xx rate canary 0.47% (2/428) vs baseline 0.23% (1/431) over 428 request pairs: difference +0.23 pp, interval [-1.90 pp, +2.41 pp] neither above the +0.00 pp tolerance nor below the +1.00 pp margin: need more data (about 610 more request pairs needed)"},
		{Name: "5xx-guard", Group: "5xx-guard", Classification: "Pass", Critical: true, BaselineMean: 0.5, CanaryMean: 0.47, BaselineCount: 16840, CanaryCount: 428,
			Ratio: 0.94, Estimate: num(0.94),
			Reason: "5xx guard: canary 0.47% (2/428) vs baseline+stable 0.50% (84/16840), rate ratio 0.94; e-value 0.21 below 1e+03, no gross regression"},
		{Name: "latency-median", Group: "latency-median", Classification: "Pass", BaselineMean: 49.8, CanaryMean: 52.1, BaselineCount: 428, CanaryCount: 428,
			Ratio: 1.05, CILower: num(-6.1), CIUpper: num(8.9), Estimate: num(2.3),
			Reason: "latency median canary 84.2 ms vs baseline 80.4 ms (+5%); requests slower than baseline's median 80.1 ms: canary 52.10% vs baseline 49.80% over 428 request pairs: difference +2.30 pp; its 95% upper bound +8.90 pp is below the +10.00 pp margin: pass"},
		{Name: "latency-tail", Group: "latency-tail", Classification: "Undecided", BaselineMean: 1.17, CanaryMean: 1.4, BaselineCount: 428, CanaryCount: 428,
			Ratio: 1.2, CILower: num(-1.2), CIUpper: num(1.9), Estimate: num(0.23),
			Reason: "latency P99 canary 240.6 ms vs baseline 231.9 ms (+4%); requests slower than baseline's P99 229.4 ms: canary 1.40% vs baseline 1.17% over 428 request pairs: difference +0.23 pp, interval [-1.20 pp, +1.90 pp] neither above the +0.00 pp tolerance nor below the +1.00 pp margin: need more data (about 1900 more request pairs needed)"},
	}
	early := map[providers.Cohort]rollout.CohortStats{
		providers.Baseline: {Requests: 150, P50Ms: 79.9, P99Ms: 220.3, ErrorRatePct: 0},
		providers.Canary:   {Requests: 147, P50Ms: 83.1, P99Ms: 236.2, ErrorRatePct: 0},
	}
	return &rollout.State{
		SchemaVersion: rollout.StateSchemaVersion, Service: "checkout", RunID: "run1", Phase: rollout.Analyzing,
		Step: 0, Steps: 3, Weights: []float64{2.5, 10, 100}, Split: split,
		StepStartedAt: at(2), NextAnalysisAt: at(23.25), StartedAt: t0, UpdatedAt: at(22),
		Verdict: rollout.VerdictNeedMoreData, Reason: "step 1/3: stable 95% baseline 2.5% canary 2.5%",
		Intervals: []rollout.Interval{
			look(1, 9, 147, rollout.VerdictNeedMoreData, "need more data: 147 request pairs, no regression shown, not yet within every margin; about 2900 more requests per cohort needed for the configured minimum detectable effects", early, metrics, report(147, 2, 1.5)),
			look(2, 16, 290, rollout.VerdictNeedMoreData, "need more data: 290 request pairs, no regression shown, not yet within every margin; about 2300 more requests per cohort needed for the configured minimum detectable effects", early, metrics, report(290, 4, 3)),
			look(3, 22, 428, rollout.VerdictNeedMoreData, "need more data: 428 request pairs, no regression shown, not yet within every margin; about 1900 more requests per cohort needed for the configured minimum detectable effects", cohorts, metrics, report(428, 6, 5)),
		},
	}
}

func TestViewCohortRows(t *testing.T) {
	t.Parallel()
	noCohorts := analyzingState()
	noCohorts.Intervals[len(noCohorts.Intervals)-1].Cohorts = nil
	noCanary := analyzingState()
	noCanary.Intervals[len(noCanary.Intervals)-1].Cohorts = map[providers.Cohort]rollout.CohortStats{
		providers.Baseline: {Requests: 0, P50Ms: rollout.Number(math.NaN()), P99Ms: rollout.Number(math.NaN()), ErrorRatePct: rollout.Number(math.NaN())},
	}
	noBaselineReqs := analyzingState()
	noBaselineReqs.Intervals[len(noBaselineReqs.Intervals)-1].Cohorts = map[providers.Cohort]rollout.CohortStats{
		providers.Baseline: {Requests: 12, P50Ms: 12.3, P99Ms: 31.25, ErrorRatePct: 100.0 / 12},
		providers.Canary:   {Requests: 0, P50Ms: rollout.Number(math.NaN()), P99Ms: rollout.Number(math.NaN()), ErrorRatePct: rollout.Number(math.NaN())},
	}
	cases := []struct {
		name      string
		st        *rollout.State
		w, h      int // h 0: 40
		want, not []string
	}{
		{name: "kayenta over a request log", st: analyzingState(), w: 80,
			want: []string{
				"metrics · step 2 interval 2 · score 100 pass",
				"▒ baseline     240 req · p50    12.3ms · p99    31.2ms · 5xx   0.00%",
				"█ canary       236 req · p50    12.9ms · p99  1234.5ms · 5xx   0.42%",
			},
			not: []string{"interval 2 · requests baseline 240"}},
		{name: "80x24: one line, baseline|canary pairs", st: analyzingState(), w: 80, h: 24,
			want: []string{"\n▒|█ req 240|236 · p50 12.3|12.9ms · p99 31.2|1234.5ms · 5xx 0.00|0.42%\n"},
			not:  []string{"▒ baseline     240 req"}},
		{name: "120x24: one line with the words", st: analyzingState(), w: 120, h: 24,
			want: []string{"\n▒|█ baseline|canary: req 240|236 · p50 12.3|12.9ms · p99 31.2|1234.5ms · 5xx 0.00|0.42%\n"}},
		{name: "80x24 without a canary summary", st: noCanary, w: 80, h: 24,
			want: []string{"▒|█ baseline|canary: req 0|– · p50 –|– · p99 –|– · 5xx –|–\n"}},
		{name: "80x24 with a canary without requests", st: noBaselineReqs, w: 80, h: 24,
			want: []string{"▒|█ baseline|canary: req 12|0 · p50 12.3ms|– · p99 31.2ms|– · 5xx 8.33%|–\n"}},
		{name: "prometheus: no summaries, the title counts the samples", st: noCohorts, w: 80,
			want: []string{"metrics · step 2 interval 2 · requests baseline 240 canary 236 · score 100 pass"},
			not:  []string{" req · p50"}},
		{name: "a cohort without requests shows dashes; a missing one no row", st: noCanary, w: 80,
			want: []string{"▒ baseline       0 req · p50         – · p99         – · 5xx       –"},
			not:  []string{"█ canary  "}},
		{name: "sequential look: sentence then cohorts then the tests", st: sequentialState(), w: 120,
			want: []string{
				"metrics · step 1 interval 3 · verdict need-more-data",
				"why:  need more data: 428 request pairs",
				"▒ baseline     431 req · p50    80.4ms · p99   231.9ms · 5xx   0.23%",
				"█ canary       428 req · p50    84.2ms · p99   240.6ms · 5xx   0.47%",
				"latency-tail", "Undecided",
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := withSnapshot(newTestModel(nil, nil), tc.st)
			m.width, m.height = tc.w, tc.h
			if tc.h == 0 {
				m.height = 40
			}
			v := m.View()
			for _, w := range tc.want {
				if !strings.Contains(v, w) {
					t.Errorf("view lacks %q:\n%s", w, v)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(v, w) {
					t.Errorf("view has %q:\n%s", w, v)
				}
			}
		})
	}
	// order: title, sentence, cohort rows, the tests' header
	m := withSnapshot(newTestModel(nil, nil), sequentialState())
	m.width, m.height = 120, 40
	v := m.View()
	i, j, k, l := strings.Index(v, "metrics · step 1"), strings.Index(v, "why:  need more data: 428"), strings.Index(v, "▒ baseline     431"), strings.Index(v, "metric          baseline")
	if !(i >= 0 && i < j && j < k && k < l) {
		t.Errorf("order title %d, sentence %d, cohorts %d, header %d:\n%s", i, j, k, l, v)
	}
}

// TestFollowPrintsSentenceAndCohorts: watch --plain's line of a sequential look has its sentence and
// the cohorts' requests, P50, P99 and 5xx rate; a judgement without summaries has no such tail.
func TestFollowPrintsSentenceAndCohorts(t *testing.T) {
	t.Parallel()
	st := sequentialState()
	evs := fixtureEvents(st)
	kayenta := analyzingState().Intervals[0] // no cohorts
	kayenta.Step = 0
	evs = append(evs, rollout.Event{V: 1, Time: at(22.5), Service: st.Service, RunID: st.RunID, Type: rollout.EvInterval, Interval: &kayenta})
	ch := make(chan Snapshot, 1)
	ch <- Snapshot{State: st, Events: evs, NewEvents: len(evs)}
	close(ch)
	var out strings.Builder
	if _, err := Follow(t.Context(), FollowConfig{Updates: ch, Out: &out}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	var look, plain string
	for _, l := range lines {
		if strings.Contains(l, "judged step 1 interval 3") {
			look = l
		}
		if strings.Contains(l, "judged step 1 interval 1: score 100") {
			plain = l
		}
	}
	want := "10:00:22 checkout: judged step 1 interval 3: need-more-data (requests baseline 428 canary 428): " +
		"need more data: 428 request pairs, no regression shown, not yet within every margin; about 1900 more requests per cohort " +
		"needed for the configured minimum detectable effects | baseline|canary req 431|428 · p50 80.4|84.2ms · p99 231.9|240.6ms · 5xx 0.23|0.47%"
	if look != want {
		t.Errorf("look line\n%q, want\n%q\nall:\n%s", look, want, out.String())
	}
	if plain == "" || strings.Contains(plain, "baseline|canary") {
		t.Errorf("judgement without summaries: %q", plain)
	}
}
