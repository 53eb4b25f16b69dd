package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/canaryctl/canaryctl/analysis"
	"github.com/canaryctl/canaryctl/providers"
)

// kayentaMode judges like the rollout engine with the Kayenta judge: per step, after the warm-up, points
// of Resolution seconds (P99 latency in ms, R-7, and 5xx rate in percent, NaN without requests, as the
// built-in proxy's series), a judgement every Interval over everything since the warm-up, fail-fast on
// a score <= Marginal, and at the end of the step Pass (>= Pass) advances, anything else between pauses.
type kayentaMode struct {
	sch   Schedule
	m     canaryModel
	judge KayentaJudge
	rng   *rand.Rand

	warmup, interval, resolution, duration int // seconds
	step, elapsed, t                       int
	r                                      routed

	// the open point and the step's series
	latC, latB         []float64
	nC, nB, errC, errB int
	p99, rate          providers.Pair
	res                result
	err                error
}

func newKayentaMode(sch Schedule, m canaryModel, j KayentaJudge, rng *rand.Rand) *kayentaMode {
	s := func(d time.Duration) int { return int(d / time.Second) }
	return &kayentaMode{sch: sch, m: m, judge: j, rng: rng, warmup: s(sch.Warmup), interval: s(sch.Interval),
		resolution: s(sch.Resolution), duration: s(sch.Duration)}
}

func (k *kayentaMode) observe(sec second) bool {
	route(sec, k.sch.Steps[k.step]/100, k.m, &k.r)
	k.res.exposed += int64(len(k.r.canary))
	if k.elapsed >= k.warmup {
		for _, s := range k.r.canary {
			k.latC = append(k.latC, s.LatencyMS)
			if s.Failed {
				k.errC++
			}
		}
		for _, s := range k.r.baseline {
			k.latB = append(k.latB, s.LatencyMS)
			if s.Failed {
				k.errB++
			}
		}
		k.nC += len(k.r.canary)
		k.nB += len(k.r.baseline)
	}
	k.t++
	k.elapsed++
	since := k.elapsed - k.warmup
	if since > 0 && since%k.resolution == 0 {
		k.closePoint()
	}
	final := k.elapsed >= k.duration
	if !(since > 0 && since%k.interval == 0) && !final {
		return false
	}
	if final && since%k.resolution != 0 {
		k.closePoint()
	}
	score, err := k.judge(k.p99, k.rate, k.rng)
	if err != nil {
		k.err = err
		k.res.outcome, k.res.seconds = Paused, float64(k.t)
		return true
	}
	switch {
	case score <= k.sch.Marginal:
		k.res.outcome = RolledBack
	case !final:
		return false
	case score >= k.sch.Pass:
		k.step++
		k.elapsed = 0
		k.p99, k.rate = providers.Pair{}, providers.Pair{}
		if k.step < len(k.sch.Steps) {
			return false
		}
		k.res.outcome = Promoted
	default:
		k.res.outcome = Paused
	}
	k.res.seconds = float64(k.t)
	return true
}

// closePoint appends the open point to the series.
func (k *kayentaMode) closePoint() {
	point := func(lat []float64, n, errs int) (p99, rate float64) {
		if n == 0 {
			return math.NaN(), math.NaN()
		}
		return analysis.Percentile(lat, 99), 100 * float64(errs) / float64(n)
	}
	pc, rc := point(k.latC, k.nC, k.errC)
	pb, rb := point(k.latB, k.nB, k.errB)
	k.p99.Canary, k.p99.Baseline = append(k.p99.Canary, pc), append(k.p99.Baseline, pb)
	k.rate.Canary, k.rate.Baseline = append(k.rate.Canary, rc), append(k.rate.Baseline, rb)
	k.latC, k.latB = k.latC[:0], k.latB[:0]
	k.nC, k.nB, k.errC, k.errB = 0, 0, 0, 0
}

func (k *kayentaMode) result() result { return k.res }
