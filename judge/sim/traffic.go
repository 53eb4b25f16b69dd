package sim

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/stat/distuv"
)

// Traffic describes the simulated service: its load over the day, bursts, latency distribution and
// background error rate. Every cohort gets the same traffic; only a scenario's regression tells the
// canary apart.
type Traffic struct {
	// RPS is the mean request rate over the day (all cohorts together).
	RPS float64 `json:"rps"`
	// Diurnal is the relative amplitude of the daily load cycle: the rate is RPS·(1 + Diurnal·sin(2πt/1d)),
	// and every rollout starts at a random time of day.
	Diurnal float64 `json:"diurnal"`
	// BurstEvery is the mean time in seconds between load bursts; BurstSeconds their mean length.
	BurstEvery   float64 `json:"burstEvery"`
	BurstSeconds float64 `json:"burstSeconds"`
	// BurstLoad multiplies the request rate during a burst; BurstLatency the latencies of every cohort;
	// BurstErrors the background error rate.
	BurstLoad    float64 `json:"burstLoad"`
	BurstLatency float64 `json:"burstLatency"`
	BurstErrors  float64 `json:"burstErrors"`
	// ErrorRate is the background 5xx probability of a request.
	ErrorRate float64 `json:"errorRate"`
	// Latency: a log-normal body (median MedianMS, log-sd Sigma) mixed with a Pareto tail (weight
	// TailWeight, minimum TailMinMS, shape TailShape).
	MedianMS   float64 `json:"medianMs"`
	Sigma      float64 `json:"sigma"`
	TailWeight float64 `json:"tailWeight"`
	TailMinMS  float64 `json:"tailMinMs"`
	TailShape  float64 `json:"tailShape"`
}

// DefaultTraffic is the traffic of the acceptance targets: 200 requests/s on average.
func DefaultTraffic() Traffic {
	return Traffic{RPS: 200, Diurnal: 0.3, BurstEvery: 300, BurstSeconds: 15, BurstLoad: 2.5, BurstLatency: 1.3,
		BurstErrors: 3, ErrorRate: 0.005, MedianMS: 80, Sigma: 0.45, TailWeight: 0.03, TailMinMS: 150, TailShape: 2.5}
}

// Validate checks the fields and says how to fix a wrong one.
func (t Traffic) Validate() error {
	pos := func(name string, v float64) error {
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("traffic %s: %v must be a positive number", name, v)
		}
		return nil
	}
	for _, e := range []error{pos("rps", t.RPS), pos("burstEvery", t.BurstEvery), pos("burstSeconds", t.BurstSeconds),
		pos("burstLoad", t.BurstLoad), pos("burstLatency", t.BurstLatency), pos("burstErrors", t.BurstErrors),
		pos("medianMs", t.MedianMS), pos("sigma", t.Sigma), pos("tailMinMs", t.TailMinMS), pos("tailShape", t.TailShape)} {
		if e != nil {
			return e
		}
	}
	switch {
	case !(t.Diurnal >= 0 && t.Diurnal < 1):
		return fmt.Errorf("traffic diurnal: %v must be in [0, 1)", t.Diurnal)
	case !(t.ErrorRate >= 0 && t.ErrorRate < 1) || t.ErrorRate*t.BurstErrors >= 1:
		return fmt.Errorf("traffic errorRate: %v must be in [0, 1) also when multiplied by burstErrors %v", t.ErrorRate, t.BurstErrors)
	case !(t.TailWeight >= 0 && t.TailWeight < 1):
		return fmt.Errorf("traffic tailWeight: %v must be in [0, 1)", t.TailWeight)
	}
	return nil
}

// LatencyCDF is the distribution function of the latency in ms without load bursts.
func (t Traffic) LatencyCDF(x float64) float64 {
	if x <= 0 {
		return 0
	}
	body := 0.5 * math.Erfc(-math.Log(x/t.MedianMS)/(t.Sigma*math.Sqrt2))
	tail := 0.0
	if x > t.TailMinMS {
		tail = 1 - math.Pow(t.TailMinMS/x, t.TailShape)
	}
	return (1-t.TailWeight)*body + t.TailWeight*tail
}

// LatencyQuantile inverts LatencyCDF by bisection.
func (t Traffic) LatencyQuantile(p float64) float64 {
	lo, hi := 0.0, t.MedianMS
	for t.LatencyCDF(hi) < p {
		hi *= 2
	}
	for range 100 {
		mid := (lo + hi) / 2
		if t.LatencyCDF(mid) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// request is one request that may go to canary or baseline: u decides its cohort under the split of
// the moment, base is its latency before load and regression, e decides whether it fails.
type request struct {
	u, base, e float64
	at         float64 // when in its second it finished, in [0, 1)
}

// looksPerSecond is how often per second the sequential mode looks (a batch every 250 ms, the
// engine's sequential.DefaultLookInterval; sim_test.go checks that the two agree).
const looksPerSecond = 4

// second is one second of traffic, generated once and replayed to every judging mode.
type second struct {
	load float64 // latency multiplier (bursts)
	pErr float64 // background 5xx probability
	cand []request
	// requests beyond the largest canary+baseline share, always stable, per quarter of the second
	otherN, otherEr [looksPerSecond]int64
}

// stream generates a rollout's traffic second by second. Requests with u < maxShare are generated one
// by one; the rest only as stable counts.
type stream struct {
	tr       Traffic
	src      rand.Source
	rng      *rand.Rand
	maxShare float64
	phase    float64 // start time of day, s
	burst    int     // seconds of burst left
	t        int
	buf      []request
}

func newStream(tr Traffic, maxShare float64, src rand.Source) *stream {
	rng := rand.New(src)
	return &stream{tr: tr, src: src, rng: rng, maxShare: maxShare, phase: rng.Float64() * 86400}
}

func (s *stream) next() second {
	tr := s.tr
	if s.burst > 0 {
		s.burst--
	} else if s.rng.Float64() < 1/tr.BurstEvery {
		s.burst = int(s.rng.ExpFloat64()*tr.BurstSeconds) + 1
	}
	rate := tr.RPS * (1 + tr.Diurnal*math.Sin(2*math.Pi*(s.phase+float64(s.t))/86400))
	sec := second{load: 1, pErr: tr.ErrorRate}
	if s.burst > 0 {
		rate *= tr.BurstLoad
		sec.load = tr.BurstLatency
		sec.pErr = tr.ErrorRate * tr.BurstErrors
	}
	s.t++
	n := poisson(s.src, rate*s.maxShare)
	s.buf = s.buf[:0]
	for range n {
		s.buf = append(s.buf, request{u: s.rng.Float64() * s.maxShare, base: s.latency(), e: s.rng.Float64(), at: s.rng.Float64()})
	}
	sec.cand = s.buf
	for q := range looksPerSecond {
		sec.otherN[q] = poisson(s.src, rate*(1-s.maxShare)/looksPerSecond)
		sec.otherEr[q] = binomial(s.src, sec.otherN[q], sec.pErr)
	}
	return sec
}

func (s *stream) latency() float64 {
	tr := s.tr
	if s.rng.Float64() < tr.TailWeight {
		return tr.TailMinMS * math.Pow(1-s.rng.Float64(), -1/tr.TailShape)
	}
	return tr.MedianMS * math.Exp(tr.Sigma*s.rng.NormFloat64())
}

// poisson draws a Poisson variate with gonum (Hörmann's PTRS for large means, exact).
func poisson(src rand.Source, mean float64) int64 {
	if mean <= 0 {
		return 0
	}
	return int64(distuv.Poisson{Lambda: mean, Src: src}.Rand())
}

// binomial draws a Binomial(n, p) variate with gonum.
func binomial(src rand.Source, n int64, p float64) int64 {
	if n == 0 || p <= 0 {
		return 0
	}
	return int64(distuv.Binomial{N: float64(n), P: p, Src: src}.Rand())
}
