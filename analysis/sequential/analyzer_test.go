package sequential

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"zero value takes defaults", Config{}, ""},
		{"defaults", DefaultConfig(), ""},
		{"no guard ignores the ratio", Config{NoGuard: true, GuardRatio: -1}, ""},
		{"alpha above 1", Config{Alpha: 2}, "alpha"},
		{"beta negative", Config{Beta: -0.5}, "beta"},
		{"error margin of 1", Config{ErrorMargin: 1}, "errorMargin"},
		{"median margin NaN", Config{MedianMargin: math.NaN()}, "medianMargin"},
		{"tail quantile of 1", Config{TailQuantile: 1}, "tailQuantile"},
		{"tail margin negative", Config{TailMargin: -0.01}, "tailMargin"},
		{"guard ratio below 1", Config{GuardRatio: 0.5}, "guardRatio"},
		{"too few threshold samples", Config{MinThresholdSamples: 5}, "minThresholdSamples"},
		{"route's fast settings", Config{FastAlternatives: [2]int{16, 24}, FastBaselineAlternatives: [2]int{12, 16}, FastAlphaShare: 0.8}, ""},
		{"fast alternative offset 0", Config{FastAlternatives: [2]int{0, 8}}, "fastAlternatives"},
		{"baseline alternative beyond the grid", Config{FastBaselineAlternatives: [2]int{12, 41}}, "fastBaselineAlternatives"},
		{"fast alpha share leaving the paired tests nothing", Config{FastAlphaShare: 0.9}, "fastAlphaShare"},
		{"fast alpha share negative", Config{FastAlphaShare: -0.1}, "fastAlphaShare"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			var ce *ConfigError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.field != "" && (!errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, ErrConfig)):
				t.Fatalf("error %v, want field %s", err, tc.field)
			case tc.field != "" && strings.Contains(err.Error(), "\n"):
				t.Fatalf("error %q is not one line", err)
			}
		})
	}
}

// traffic generates requests: log-normal body with a Pareto tail, 0.5% errors.
type traffic struct {
	rng       *rand.Rand
	pErr      float64
	shiftMS   float64
	tailScale float64 // multiplies latencies above 200 ms
}

func (g traffic) samples(n int) []Sample {
	s := make([]Sample, n)
	for i := range s {
		l := 80 * math.Exp(0.45*g.rng.NormFloat64())
		if g.rng.Float64() < 0.03 {
			l = 150 * math.Pow(1-g.rng.Float64(), -1/2.5)
		}
		if g.tailScale > 0 && l > 200 {
			l *= g.tailScale
		}
		s[i] = Sample{LatencyMS: l + g.shiftMS, Failed: g.rng.Float64() < g.pErr}
	}
	return s
}

func newTraffic(seed uint64, pErr, shift, tail float64) traffic {
	return traffic{rng: rand.New(rand.NewPCG(seed, 11)), pErr: pErr, shiftMS: shift, tailScale: tail}
}

// run feeds seconds of 5 canary and 5 baseline requests (and 190 stable) until a verdict or limit.
func run(t *testing.T, a *Analyzer, canary, baseline traffic, limit int) (Verdict, int) {
	t.Helper()
	for sec := 1; sec <= limit; sec++ {
		stableErr := int64(0)
		for range 190 {
			if baseline.rng.Float64() < baseline.pErr {
				stableErr++
			}
		}
		v := a.Observe(Batch{Canary: canary.samples(5), Baseline: baseline.samples(5), StableRequests: 190, StableErrors: stableErr})
		if v != NeedMoreData {
			return v, sec
		}
	}
	return NeedMoreData, limit
}

// TestAnalyzerFalseAlarmUnderContinuousMonitoring: identical canary and baseline, a look every second
// for ten minutes: the share of runs that ever Fail (any of the four tests) stays at or below alpha.
func TestAnalyzerFalseAlarmUnderContinuousMonitoring(t *testing.T) {
	t.Parallel()
	const runs, alpha = 400 / raceScale, 0.05
	fails := 0
	for r := range runs {
		a, err := New(Config{Alpha: alpha})
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := run(t, a, newTraffic(uint64(2*r), 0.005, 0, 0), newTraffic(uint64(2*r+1), 0.005, 0, 0), 600); v == Fail {
			fails++
		}
	}
	atMostRate(t, "analyzer false alarms", fails, runs, alpha)
}

func TestAnalyzerDetects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		canary   func(seed uint64) traffic
		within   int // seconds
		metric   string
		minShare float64
	}{
		// the fast 5xx test (uncapped, against a tolerated ratio of FreshFactor = 3) is the quick
		// path; here the control is the baseline alone (no stable), 6 requests/s
		{"10% 5xx", func(s uint64) traffic { return newTraffic(s, 0.10, 0, 0) }, 60, MetricFast, 0.9},
		{"+20 ms on every request", func(s uint64) traffic { return newTraffic(s, 0.005, 20, 0) }, 180, MetricMedian, 0.95},
		{"tail twice as slow", func(s uint64) traffic { return newTraffic(s, 0.005, 0, 2) }, 900, MetricTail, 0.9},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const runs = 60
			hits := 0
			for r := range runs {
				a, _ := New(Config{})
				v, _ := run(t, a, tc.canary(uint64(1000*ci+2*r)), newTraffic(uint64(1000*ci+2*r+1), 0.005, 0, 0), tc.within)
				if v != Fail {
					continue
				}
				for _, d := range a.Report().Decisions {
					if strings.Contains("|"+tc.metric+"|", "|"+d.Metric+"|") && d.Verdict == Fail {
						hits++
						break
					}
				}
			}
			if share := float64(hits) / runs; share < tc.minShare {
				t.Errorf("%s failed in %d of %d runs within %d s, want at least %.0f%%", tc.metric, hits, runs, tc.within, 100*tc.minShare)
			}
		})
	}
}

func TestAnalyzerNeedsMoreDataOnLowTraffic(t *testing.T) {
	t.Parallel()
	a, _ := New(Config{})
	c, b := newTraffic(1, 0.005, 0, 0), newTraffic(2, 0.005, 0, 0)
	for range 120 { // one request per cohort per second for two minutes
		a.Observe(Batch{Canary: c.samples(1), Baseline: b.samples(1)})
	}
	rep := a.Report()
	if rep.Verdict != NeedMoreData {
		t.Fatalf("verdict %v after 120 pairs, want need-more-data", rep.Verdict)
	}
	if rep.MoreRequests <= 0 || !strings.Contains(rep.Reason, "more requests per cohort") {
		t.Errorf("report does not say how many more requests: %d, %q", rep.MoreRequests, rep.Reason)
	}
}

// TestReportExplains: every decision names what was compared, the sample sizes, effect, interval and
// threshold, and its sentence carries the numbers.
func TestReportExplains(t *testing.T) {
	t.Parallel()
	a, _ := New(Config{})
	run(t, a, newTraffic(5, 0.30, 0, 0), newTraffic(6, 0.005, 0, 0), 60)
	rep := a.Report()
	if rep.Verdict != Fail || !strings.Contains(rep.Reason, MetricFast) {
		t.Fatalf("verdict %v (%s), want a failure of the fast 5xx test", rep.Verdict, rep.Reason)
	}
	if len(rep.Decisions) != 5 {
		t.Fatalf("%d decisions, want 5", len(rep.Decisions))
	}
	for _, d := range rep.Decisions {
		waiting := strings.Contains(d.Reason, "waiting for") // latency tests before the threshold exists
		if d.Compared == "" || d.Reason == "" || (d.Canary == 0 && !waiting) || strings.Contains(d.Reason, "\n") {
			t.Errorf("%s: incomplete explanation %+v", d.Metric, d)
		}
	}
	g := rep.Decisions[2]
	if g.Metric != MetricFast || !(g.Lower > g.Tolerance) || !strings.Contains(g.Reason, "lower bound") {
		t.Errorf("fast 5xx decision does not show the deciding bound: %+v", g)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatalf("report does not marshal: %v", err)
	}
}

func TestReportGolden(t *testing.T) {
	t.Parallel()
	a, _ := New(Config{})
	run(t, a, newTraffic(7, 0.005, 20, 0), newTraffic(8, 0.005, 0, 0), 300)
	got, err := json.MarshalIndent(a.Report(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	const path = "testdata/report.golden.json"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("report differs from %s (run go test -update if intended):\n%s", path, got)
	}
}

func TestSafeToExpand(t *testing.T) {
	t.Parallel()
	a, _ := New(Config{})
	if a.SafeToExpand(3) {
		t.Error("safe to expand without data")
	}
	run(t, a, newTraffic(9, 0.005, 0, 0), newTraffic(10, 0.005, 0, 0), 120)
	if a.Verdict() == NeedMoreData && !a.SafeToExpand(100) {
		t.Error("a factor of 100 times every margin should be excluded after 600 identical pairs")
	}
	if a.SafeToExpand(0.5) {
		t.Error("a factor below 1 must never allow expansion")
	}
}

func FuzzAnalyzer(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 200, 0, 0, 9}, uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		a, err := New(Config{MinThresholdSamples: 10})
		if err != nil {
			t.Fatal(err)
		}
		var c, b []Sample
		for i, x := range data {
			s := Sample{LatencyMS: float64(x) * 3, Failed: x%7 == 0}
			if x == 255 {
				s.LatencyMS = math.NaN()
			}
			if i%int(split%5+2) == 0 {
				c = append(c, s)
			} else {
				b = append(b, s)
			}
			if i%5 == 4 {
				a.Observe(Batch{Canary: c, Baseline: b, StableRequests: int64(x), StableErrors: int64(x / 50)})
				c, b = nil, nil
			}
		}
		rep := a.Report()
		if _, err := json.Marshal(rep); err != nil {
			t.Fatalf("report does not marshal: %v", err)
		}
		for _, d := range rep.Decisions {
			if !(d.EValue >= 0) || (d.Upper != nil && !(*d.Upper >= -100 && *d.Upper <= 100)) || !(d.Lower >= -100) {
				t.Fatalf("decision out of range: %+v", d)
			}
		}
	})
}

// BenchmarkAnalyzerObserve measures one look with 50 canary and 50 baseline requests.
func BenchmarkAnalyzerObserve(b *testing.B) {
	a, _ := New(Config{})
	c, bl := newTraffic(1, 0.005, 0, 0), newTraffic(2, 0.005, 0, 0)
	batches := make([]Batch, 64)
	for i := range batches {
		batches[i] = Batch{Canary: c.samples(50), Baseline: bl.samples(50), StableRequests: 1900, StableErrors: 9}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a.Observe(batches[i%len(batches)])
		i++
	}
}

// TestExpandWithin: the projection agrees with SafeToExpand now, says yes for identical cohorts
// given enough further pairs, and never for a canary whose difference is beyond the factor.
func TestExpandWithin(t *testing.T) {
	t.Parallel()
	a, _ := New(Config{})
	run(t, a, newTraffic(11, 0.005, 0, 0), newTraffic(12, 0.005, 0, 0), 30)
	if a.Verdict() != NeedMoreData {
		t.Fatalf("verdict %s after 150 pairs, want need-more-data", a.Verdict())
	}
	if now, proj := a.SafeToExpand(3), a.ExpandWithin(3, 0); now != proj {
		t.Errorf("with no further pairs the projection %v should be SafeToExpand %v", proj, now)
	}
	if !a.ExpandWithin(3, 1_000_000) {
		t.Error("identical cohorts: a million more pairs should exclude 3 times every margin")
	}
	b, _ := New(Config{})
	run(t, b, newTraffic(13, 0.005, 60, 0), newTraffic(14, 0.005, 0, 0), 20)
	if b.ExpandWithin(3, 1_000_000) {
		t.Error("a canary 60 ms slower on every request can never be within 3 times the median margin")
	}
}
