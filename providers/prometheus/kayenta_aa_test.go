package prometheus_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/analysis"
	"github.com/canaryctl/canaryctl/judge"
	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/prometheus"
	"github.com/canaryctl/canaryctl/providers/prometheus/promtest"
	"github.com/canaryctl/canaryctl/rollout"
)

// aaHistory writes OpenMetrics text of the built-in proxy's series for two identical cohorts
// (baseline and canary) over steps × stepLen, scraped every scrape: perSec requests per second per
// cohort (Poisson), log-normal latencies (median 80 ms, sigma 0.45) with a 3% Pareto tail, 0.5% 5xx
// (the canary: canaryErr).
func aaHistory(seed uint64, start time.Time, steps int, stepLen, scrape time.Duration, perSec, canaryErr float64) []byte {
	rng := rand.New(rand.NewPCG(seed, 99))
	var les []float64
	for le := 0.01; le < 3; le *= 1.2 {
		les = append(les, le)
	}
	cohorts := []string{"baseline", "canary"}
	type state struct {
		ok, fail float64
		buckets  []float64
		sum      float64
	}
	st := map[string]*state{}
	for _, c := range cohorts {
		st[c] = &state{buckets: make([]float64, len(les))}
	}
	type point struct {
		ts  float64
		val map[string]state
	}
	n := int(time.Duration(steps) * stepLen / scrape)
	pts := make([]point, 0, n)
	poisson := func(l float64) int {
		k, p := 0, math.Exp(-l)
		for u := rng.Float64(); u > p; u *= rng.Float64() {
			k++
		}
		return k
	}
	for i := range n {
		pt := point{ts: float64(start.Add(time.Duration(i)*scrape).UnixMilli()) / 1000, val: map[string]state{}}
		for _, c := range cohorts {
			s := st[c]
			for range poisson(perSec * scrape.Seconds()) {
				l := 0.080 * math.Exp(0.45*rng.NormFloat64())
				if rng.Float64() < 0.03 {
					l = 0.150 * math.Pow(1-rng.Float64(), -1/2.5)
				}
				pErr := 0.005
				if c == "canary" {
					pErr = canaryErr
				}
				if rng.Float64() < pErr {
					s.fail++
				} else {
					s.ok++
				}
				s.sum += l
				for j, le := range les {
					if l <= le {
						s.buckets[j]++
					}
				}
			}
			pt.val[c] = state{ok: s.ok, fail: s.fail, sum: s.sum, buckets: append([]float64(nil), s.buckets...)}
		}
		pts = append(pts, pt)
	}
	var b bytes.Buffer
	b.WriteString("# TYPE canaryctl_proxy_requests counter\n")
	for _, c := range cohorts {
		for _, code := range []string{"200", "500"} {
			for _, p := range pts {
				v := p.val[c].ok
				if code == "500" {
					v = p.val[c].fail
				}
				fmt.Fprintf(&b, "canaryctl_proxy_requests_total{cohort=%q,route=\"split\",code=%q} %g %.3f\n", c, code, v, p.ts)
			}
		}
	}
	b.WriteString("# TYPE canaryctl_proxy_request_duration_seconds histogram\n")
	for _, c := range cohorts {
		for _, p := range pts {
			v := p.val[c]
			for j, le := range les {
				fmt.Fprintf(&b, "canaryctl_proxy_request_duration_seconds_bucket{cohort=%q,route=\"split\",le=\"%g\"} %g %.3f\n", c, le, v.buckets[j], p.ts)
			}
			total := v.ok + v.fail
			fmt.Fprintf(&b, "canaryctl_proxy_request_duration_seconds_bucket{cohort=%q,route=\"split\",le=\"+Inf\"} %g %.3f\n", c, total, p.ts)
			fmt.Fprintf(&b, "canaryctl_proxy_request_duration_seconds_count{cohort=%q,route=\"split\"} %g %.3f\n", c, total, p.ts)
			fmt.Fprintf(&b, "canaryctl_proxy_request_duration_seconds_sum{cohort=%q,route=\"split\"} %g %.3f\n", c, v.sum, p.ts)
		}
	}
	b.WriteString("# EOF\n")
	return b.Bytes()
}

// TestKayentaAAFailFastOverRealPrometheus: identical baseline and canary, 2 requests/s each (a 10%
// step of 20 requests/s), scraped every 10 s into a real Prometheus; every 5-minute step judged on
// the engine's default Kayenta schedule (30 s warm-up, a judgement every minute and at the step's
// end, 10 s resolution, the default metrics: P99 latency and 5xx rate, points without requests
// removed) through this provider and the Kayenta judge. A step fails fast when any judgement scores
// at or below 75. With points one rate window apart (30 s, no shared data) and intervals too small
// for Mann-Whitney to reject left unjudged, at most 2% of the steps may fail fast (issue 14 measured
// 27-36% with 1 m windows every 10 s).
func TestKayentaAAFailFastOverRealPrometheus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		canaryErr float64
		check     func(t *testing.T, rate float64)
	}{
		{"good canary: at most 2% of steps fail fast", 0.005, func(t *testing.T, rate float64) {
			if rate > 0.02 {
				t.Errorf("A/A fail-fast in %.1f%% of steps, want at most 2%%", 100*rate)
			}
		}},
		// the same pipeline sees a real regression: the A/A rate is not low because nothing is judged
		{"10% 5xx canary: most steps fail fast", 0.10, func(t *testing.T, rate float64) {
			if rate < 0.9 {
				t.Errorf("a 10%%-5xx canary failed fast in only %.1f%% of steps, want at least 90%%", 100*rate)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.check(t, kayentaFailFastRate(t, tc.canaryErr))
		})
	}
}

// kayentaFailFastRate judges 150 steps of history and returns the share that failed fast.
func kayentaFailFastRate(t *testing.T, canaryErr float64) float64 {
	const steps, stepLen, scrape = 150, 5 * time.Minute, 10 * time.Second
	start := time.Now().Add(-time.Duration(steps+2) * stepLen).Truncate(time.Minute)
	srv := promtest.StartWithHistory(t, aaHistory(1, start, steps, stepLen, scrape, 2, canaryErr))
	p, err := prometheus.New(prometheus.Config{URL: srv.URL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	an := rollout.AnalysisSpec{Metrics: rollout.DefaultMetrics(), Thresholds: rollout.Thresholds{Pass: 95, Marginal: 75}}
	kj, err := rollout.NewKayentaJudge(rollout.KayentaJudgeConfig{Analysis: an, Noise: rand.New(rand.NewPCG(2, 3))})
	if err != nil {
		t.Fatal(err)
	}
	const warmup, interval, resolution = 30 * time.Second, time.Minute, 10 * time.Second
	failed, judged, unjudged := 0, 0, 0
	var scores []float64
	for s := range steps {
		stepStart := start.Add(time.Duration(s)*stepLen + 20*time.Second) // not aligned to the scrapes
		var at []time.Duration
		for d := warmup + interval; d < stepLen; d += interval {
			at = append(at, d)
		}
		at = append(at, stepLen)
		for _, d := range at {
			w := providers.Window{Start: stepStart.Add(warmup), End: stepStart.Add(d), Step: resolution}
			var pairs []rollout.MetricPair
			enough := true
			for _, m := range an.Metrics {
				pair, err := p.Pair(t.Context(), providers.Metric{Name: m.Name, Kind: m.Kind, Quantile: m.Quantile}, w)
				if err != nil {
					t.Fatalf("step %d at %s: %s: %v", s, d, m.Name, err)
				}
				b, c := finitePoints(pair.Baseline), finitePoints(pair.Canary)
				enough = enough && analysis.MannWhitneyCanReject(b, c, 1-judge.ConfLevel)
				pairs = append(pairs, rollout.MetricPair{Metric: m, Pair: pair})
			}
			if !enough { // the engine does not judge it (need more data)
				unjudged++
				continue
			}
			judged++
			j, err := kj.Judge(t.Context(), pairs)
			if err != nil {
				t.Fatal(err)
			}
			scores = append(scores, j.Score)
			if j.Score <= 75 {
				failed++
				break
			}
		}
	}
	sort.Float64s(scores)
	rate := float64(failed) / steps
	t.Logf("over real Prometheus: %d of %d steps failed fast (%.1f%%); %d judgements, %d left unjudged for too few points; lowest scores %v",
		failed, steps, 100*rate, judged, unjudged, scores[:min(5, len(scores))])
	if judged < steps {
		t.Errorf("only %d judgements over %d steps: the default schedule should judge most intervals", judged, steps)
	}
	return rate
}

func finitePoints(xs []float64) int {
	n := 0
	for _, x := range xs {
		if !math.IsNaN(x) {
			n++
		}
	}
	return n
}
