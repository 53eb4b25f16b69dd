package sequential

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// world generates timed requests look by look: Poisson arrivals per cohort, log-normal latencies
// scaled by a shared slowdown factor of the moment, a base error rate, and optional per-instance
// error episodes of the canary's and the baseline's instances.
type world struct {
	rng                  *rand.Rand
	t0                   time.Time
	canaryRPS, baseRPS   float64
	stableRPS            float64
	pErr                 float64
	canaryErr            float64 // the canary's own error rate (0: pErr)
	slow                 func(sec float64) float64
	instances            int // per cohort, named when > 0
	episodeEvery         float64
	episodeLen, episodeE float64
	episodes             map[string][]float64 // instance -> episode start times (s)
}

func (w *world) episodeAt(name string, sec float64) bool {
	for _, s := range w.episodes[name] {
		if sec >= s && sec < s+w.episodeLen {
			return true
		}
	}
	return false
}

func (w *world) plan(horizon float64) {
	w.episodes = map[string][]float64{}
	if w.episodeEvery == 0 {
		return
	}
	for _, c := range []string{"canary", "baseline"} {
		for i := range w.instances {
			name := c + string(rune('0'+i))
			for s := w.rng.ExpFloat64() * w.episodeEvery; s < horizon; s += w.episodeLen + w.rng.ExpFloat64()*w.episodeEvery {
				w.episodes[name] = append(w.episodes[name], s)
			}
		}
	}
}

func poisson(rng *rand.Rand, l float64) int {
	n, p := 0, math.Exp(-l)
	for u := rng.Float64(); u > p; u *= rng.Float64() {
		n++
	}
	return n
}

// look returns the batch of the look ending at sec+dt.
func (w *world) look(sec, dt float64) Batch {
	gen := func(rps float64, cohort string, pErr float64) []Sample {
		n := poisson(w.rng, rps*dt)
		out := make([]Sample, 0, n)
		for range n {
			at := sec + dt*w.rng.Float64()
			s := Sample{LatencyMS: 80 * math.Exp(0.45*w.rng.NormFloat64()) * w.slow(at),
				At: w.t0.Add(time.Duration(at * float64(time.Second)))}
			p := pErr
			if w.instances > 0 {
				s.Instance = cohort + string(rune('0'+w.rng.IntN(w.instances)))
				if w.episodeAt(s.Instance, at) {
					p += w.episodeE
				}
			}
			s.Failed = w.rng.Float64() < p
			out = append(out, s)
		}
		return out
	}
	ce := w.pErr
	if w.canaryErr > 0 {
		ce = w.canaryErr
	}
	b := Batch{Canary: gen(w.canaryRPS, "canary", ce), Baseline: gen(w.baseRPS, "baseline", w.pErr),
		Until: w.t0.Add(time.Duration((sec + dt) * float64(time.Second)))}
	b.StableRequests = int64(poisson(w.rng, w.stableRPS*dt))
	for range b.StableRequests {
		if w.rng.Float64() < w.pErr {
			b.StableErrors++
		}
	}
	// a look's requests arrive in finishing order
	for _, s := range [][]Sample{b.Canary, b.Baseline} {
		for i := 1; i < len(s); i++ {
			for j := i; j > 0 && s[j].At.Before(s[j-1].At); j-- {
				s[j], s[j-1] = s[j-1], s[j]
			}
		}
	}
	return b
}

// runWorld looks every 250 ms for the given seconds and returns whether the analyzer failed.
func runWorld(t *testing.T, a *Analyzer, w *world, secs float64) bool {
	t.Helper()
	w.plan(secs)
	for sec := 0.0; sec < secs; sec += 0.25 {
		if a.Observe(w.look(sec, 0.25)) == Fail {
			return true
		}
	}
	return false
}

// slowdowns is a shared slowdown of x1.5 for 45 s every 4 minutes, hitting every cohort alike.
func slowdowns(at float64) float64 {
	if math.Mod(at, 240) >= 195 {
		return 1.5
	}
	return 1
}

// TestSlotPairingUnequalSharesSharedSlowdown: the baseline gets 1.25 times the canary's requests
// while a shared slowdown comes and goes. Pairs made within time slots keep the false alarm rate at
// or below alpha over 15 minutes of looks every 250 ms.
func TestSlotPairingUnequalSharesSharedSlowdown(t *testing.T) {
	t.Parallel()
	const runs, alpha = 200 / raceScale, 0.05
	fails := 0
	for r := range runs {
		a, err := New(Config{Alpha: alpha, Seed: uint64(r + 1)})
		if err != nil {
			t.Fatal(err)
		}
		w := &world{rng: rand.New(rand.NewPCG(uint64(r), 21)), t0: time.Unix(1e9, 0), canaryRPS: 20, baseRPS: 25,
			stableRPS: 155, pErr: 0.005, slow: slowdowns}
		if runWorld(t, a, w, 900) {
			fails++
		}
	}
	atMostRate(t, "false alarms with unequal shares and shared slowdowns", fails, runs, alpha)
}

// TestSlotPairingDetects: the slots cost little power: +20 ms on every request at 5 requests/s per
// cohort is caught within three minutes.
func TestSlotPairingDetects(t *testing.T) {
	t.Parallel()
	const runs = 40
	hits := 0
	for r := range runs {
		a, _ := New(Config{Seed: uint64(r + 1)})
		w := &world{rng: rand.New(rand.NewPCG(uint64(r), 22)), t0: time.Unix(1e9, 0), canaryRPS: 5, baseRPS: 5,
			stableRPS: 190, pErr: 0.005, slow: func(float64) float64 { return 1 }}
		w.plan(180)
		for sec := 0.0; sec < 180; sec += 0.25 {
			b := w.look(sec, 0.25)
			for i := range b.Canary {
				b.Canary[i].LatencyMS += 20
			}
			if a.Observe(b) == Fail {
				hits++
				break
			}
		}
	}
	if hits < runs*95/100 {
		t.Errorf("+20 ms caught in %d of %d runs within 3 minutes, want 95%%", hits, runs)
	}
}

// TestOneInstanceEpisodeIsNotARegression: two instances per cohort; now and then one instance answers
// 20% of its requests with 5xx for 15 s (the canary's as often as the baseline's). With the instance
// names a Fail needs every canary instance to be worse, and the false alarm rate stays within alpha
// (the default, 0.01, with an episode on some canary instance every 2.5 minutes on average);
// the same traffic without names rolls back far more often, which is what the rule is for.
func TestOneInstanceEpisodeIsNotARegression(t *testing.T) {
	t.Parallel()
	const runs, alpha = 200 / raceScale, 0.01
	count := func(named bool) int {
		fails := 0
		for r := range runs {
			a, _ := New(Config{Alpha: alpha, Seed: uint64(r + 1)})
			w := &world{rng: rand.New(rand.NewPCG(uint64(r), 23)), t0: time.Unix(1e9, 0), canaryRPS: 20, baseRPS: 20,
				stableRPS: 160, pErr: 0.005, slow: func(float64) float64 { return 1 }, instances: 2,
				episodeEvery: 300, episodeLen: 15, episodeE: 0.2}
			w.plan(900)
			failed := false
			for sec := 0.0; sec < 900 && !failed; sec += 0.25 {
				b := w.look(sec, 0.25)
				if !named {
					for i := range b.Canary {
						b.Canary[i].Instance = ""
					}
				}
				failed = a.Observe(b) == Fail
			}
			if failed {
				fails++
			}
		}
		return fails
	}
	named, anonymous := count(true), count(false)
	atMostRate(t, "false alarms with per-instance episodes, instances named", named, runs, alpha)
	if anonymous <= named || float64(anonymous)/runs < 2*alpha {
		t.Errorf("without instance names %d of %d runs failed (named: %d): the episodes should fool the cohort-level tests", anonymous, runs, named)
	}
}

// TestRegressionOnEveryInstanceStillFails: the per-instance rule does not hide a version regression:
// a canary answering 10% 5xx on both of its instances is rolled back.
func TestRegressionOnEveryInstanceStillFails(t *testing.T) {
	t.Parallel()
	const runs = 40
	hits := 0
	for r := range runs {
		a, _ := New(Config{Seed: uint64(r + 1)})
		w := &world{rng: rand.New(rand.NewPCG(uint64(r), 24)), t0: time.Unix(1e9, 0), canaryRPS: 5, baseRPS: 5,
			stableRPS: 190, pErr: 0.005, canaryErr: 0.10, slow: func(float64) float64 { return 1 }, instances: 2}
		if runWorld(t, a, w, 180) {
			hits++
			if g := a.Report().Decisions[1]; g.Verdict == Fail && g.Instances != 2 {
				t.Errorf("a guard failure with two named instances should say so: %+v", g)
			}
		}
	}
	if hits < runs*95/100 {
		t.Errorf("10%% 5xx on every instance caught in %d of %d runs within 3 minutes, want 95%%", hits, runs)
	}
}

// TestPassIsEarnedPerStep: a canary that passed a step starts the next one undecided, and a
// regression that appears only in the later step is caught there.
func TestPassIsEarnedPerStep(t *testing.T) {
	t.Parallel()
	a, _ := New(Config{})
	w := &world{rng: rand.New(rand.NewPCG(5, 25)), t0: time.Unix(1e9, 0), canaryRPS: 50, baseRPS: 50, stableRPS: 100,
		pErr: 0.005, slow: func(float64) float64 { return 1 }}
	sec := 0.0
	for ; sec < 1200 && a.Verdict() != Pass; sec += 0.25 {
		a.Observe(w.look(sec, 0.25))
	}
	if a.Verdict() != Pass {
		t.Fatalf("identical cohorts did not pass in 20 minutes: %s", a.Report().Reason)
	}
	a.NewStep()
	if v := a.Verdict(); v != NeedMoreData {
		t.Fatalf("verdict %s right after a new step, want need-more-data", v)
	}
	w.canaryErr = 0.02 // +1.5 pp from now on
	end := sec + 600
	for ; sec < end && a.Verdict() != Fail; sec += 0.25 {
		a.Observe(w.look(sec, 0.25))
	}
	if a.Verdict() != Fail {
		t.Fatalf("+1.5 pp in the second step not caught in 10 minutes: %s", a.Report().Reason)
	}
}
