package traffic

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// fixed routes every request by one split at one step.
type fixed Route

func (f fixed) Route(time.Time) Route { return Route(f) }

func base() Model {
	return Model{Rate: Rate{RPS: 200}, Latency: Latency{Median: 80 * time.Millisecond, Sigma: 0.45,
		Tail: &Tail{Weight: 0.03, Min: 150 * time.Millisecond, Shape: 2.5}}, ErrorRate: 0.005}
}

// collect generates d of traffic and returns the finished requests.
func collect(m Model, r Router, d time.Duration, seed uint64) []providers.Request {
	g := New(m, t0, r, [2]uint64{seed, 1})
	var out []providers.Request
	g.Advance(t0.Add(d), func(q providers.Request) { out = append(out, q) })
	return out
}

func TestModelValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		mut  func(*Model)
		want string // "" valid, else the field the error must name
	}{
		{"defaults", func(*Model) {}, ""},
		{"no rate", func(m *Model) { m.Rate.RPS = 0 }, "rate.rps"},
		{"NaN rate", func(m *Model) { m.Rate.RPS = math.NaN() }, "rate.rps"},
		{"diurnal 1", func(m *Model) { m.Rate.Diurnal.Amplitude = 1 }, "rate.diurnal.amplitude"},
		{"no median", func(m *Model) { m.Latency.Median = 0 }, "latency.median"},
		{"tail shape 1", func(m *Model) { m.Latency.Tail.Shape = 1 }, "latency.tail.shape"},
		{"error rate 1", func(m *Model) { m.ErrorRate = 1 }, "errorRate"},
		{"no canary instance", func(m *Model) { m.Cohorts.Canary.Instances = -1 }, "cohorts.canary.instances"},
		{"negative share", func(m *Model) { m.Cohorts.Baseline.Share = -1 }, "cohorts.baseline.share"},
		{"cold start without duration", func(m *Model) { m.Cohorts.Canary.ColdStart = &ColdStart{ErrorFactor: 3} }, "cohorts.canary.coldStart.duration"},
		{"episode without every", func(m *Model) { m.Cohorts.Stable.Episodes = &Episode{Duration: time.Second} }, "cohorts.stable.episodes.every"},
		{"episode max below duration", func(m *Model) {
			m.Cohorts.Stable.Episodes = &Episode{Every: time.Minute, Duration: 10 * time.Second, DurationMax: time.Second}
		}, "cohorts.stable.episodes.durationMax"},
		{"no clients", func(m *Model) { m.Clients = &Clients{} }, "clients.count"},
		{"huge heterogeneity", func(m *Model) { m.Clients = &Clients{Count: 5, Heterogeneity: Heterogeneity{Errors: 9}} }, "clients.heterogeneity.errors"},
		{"event without duration", func(m *Model) { m.Events = []Event{{Episode: Episode{Every: time.Minute}}} }, "events[0].duration"},
		{"negative load", func(m *Model) {
			m.Events = []Event{{Episode: Episode{Every: time.Minute, Duration: time.Second}, Load: -2}}
		}, "events[0].load"},
		{"drift -100%", func(m *Model) { m.Drift.LatencyPerHour = -1 }, "drift.latencyPerHour"},
		{"negative step", func(m *Model) { m.Regression.FromStep = -1 }, "regression.fromStep"},
		{"regression error rate 1", func(m *Model) { m.Regression.ErrorRate = 1 }, "regression.errorRate"},
		{"negative added", func(m *Model) { m.Regression.Added = -time.Millisecond }, "regression.added"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := base()
			tc.mut(&m)
			err := m.WithDefaults().Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want+":")):
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestGeneratorFollowsTheModel(t *testing.T) {
	t.Parallel()
	m := base()
	reqs := collect(m, fixed{}, 10*time.Minute, 1)
	if n, want := float64(len(reqs)), 200*600.0; math.Abs(n/want-1) > 0.02 {
		t.Errorf("%v requests in 10 min, want %v ± 2%%", n, want)
	}
	var lat []float64
	errs := 0
	for i, q := range reqs {
		if i > 0 && q.Time.Before(reqs[i-1].Time) {
			t.Fatalf("request %d finished at %s, before the one emitted before it (%s)", i, q.Time, reqs[i-1].Time)
		}
		if q.Cohort != providers.Stable || !strings.HasPrefix(q.Instance, "stable-") {
			t.Fatalf("request %+v: the split sends everything to stable", q)
		}
		lat = append(lat, float64(q.Latency)/float64(time.Millisecond))
		if q.Status >= 500 {
			errs++
		}
	}
	slices.Sort(lat)
	for _, p := range []float64{0.5, 0.9, 0.99} {
		got, want := lat[int(p*float64(len(lat)))], m.WithDefaults().Latency.Quantile(p)
		if math.Abs(got/want-1) > 0.04 {
			t.Errorf("P%g %.1f ms, model %.1f ms", 100*p, got, want)
		}
	}
	// 120k Bernoulli(0.005): sd of the rate 0.0002; 5 sd
	if rate := float64(errs) / float64(len(reqs)); math.Abs(rate-0.005) > 0.001 {
		t.Errorf("5xx rate %.4f, model 0.005", rate)
	}
}

func TestLatencyQuantileInvertsTheCDF(t *testing.T) {
	t.Parallel()
	l := base().WithDefaults().Latency
	for _, p := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		if got := l.LatencyCDF(l.Quantile(p)); math.Abs(got-p) > 1e-9 {
			t.Errorf("CDF(Quantile(%v)) = %v", p, got)
		}
	}
}

// shares counts requests per cohort.
func shares(reqs []providers.Request) map[providers.Cohort]float64 {
	out := map[providers.Cohort]float64{}
	for _, q := range reqs {
		out[q.Cohort]++
	}
	for c := range out {
		out[c] /= float64(len(reqs))
	}
	return out
}

func TestRoutingFollowsTheSplitAndShareMultipliers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name             string
		split            providers.Split
		baselineShare    float64
		canary, baseline float64
	}{
		{"2.5% each", providers.Split{Canary: 250, Baseline: 250}, 1, 0.025, 0.025},
		{"baseline gets 1.25x", providers.Split{Canary: 1000, Baseline: 1000}, 1.25, 0.10, 0.125},
		{"50/50 with 1.25x: renormalized", providers.Split{Canary: 5000, Baseline: 5000}, 1.25, 0.5 / 1.125, 0.625 / 1.125},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := base()
			m.Cohorts.Baseline.Share = tc.baselineShare
			s := shares(collect(m, fixed{Split: tc.split}, 5*time.Minute, 2))
			if math.Abs(s[providers.Canary]-tc.canary) > 0.01 || math.Abs(s[providers.Baseline]-tc.baseline) > 0.01 {
				t.Errorf("canary %.3f baseline %.3f, want %.3f and %.3f", s[providers.Canary], s[providers.Baseline], tc.canary, tc.baseline)
			}
		})
	}
}

func TestRegressionStartsAtItsStep(t *testing.T) {
	t.Parallel()
	m := base()
	m.Regression = Regression{ErrorRate: 0.5, Added: 100 * time.Millisecond, FromStep: 3}
	split := providers.Split{Canary: 5000, Baseline: 5000}
	for _, tc := range []struct {
		step int
		want bool
	}{{0, false}, {1, false}, {2, true}} {
		reqs := collect(m, fixed{Split: split, Step: tc.step}, time.Minute, 3)
		var canary, fails int
		var lat float64
		for _, q := range reqs {
			if q.Cohort == providers.Canary {
				canary++
				lat += float64(q.Latency) / float64(time.Millisecond)
				if q.Status >= 500 {
					fails++
				}
			}
		}
		got := float64(fails)/float64(canary) > 0.4 && lat/float64(canary) > 150
		if got != tc.want {
			t.Errorf("step %d: canary 5xx %.3f, mean latency %.0f ms; regressed %v, want %v", tc.step, float64(fails)/float64(canary), lat/float64(canary), got, tc.want)
		}
	}
}

func TestStickyClientsStayInTheirCohort(t *testing.T) {
	t.Parallel()
	m := base()
	m.Clients = &Clients{Count: 1, Sticky: true}
	s := shares(collect(m, fixed{Split: providers.Split{Canary: 5000, Baseline: 5000}}, time.Minute, 4))
	if len(s) != 1 {
		t.Errorf("one sticky client reached %d cohorts (%v), want 1", len(s), s)
	}
	m.Clients = &Clients{Count: 5000, Sticky: true, Heterogeneity: Heterogeneity{Rate: 0.5}}
	s = shares(collect(m, fixed{Split: providers.Split{Canary: 1000, Baseline: 1000}}, 5*time.Minute, 4))
	if math.Abs(s[providers.Canary]-0.1) > 0.03 || math.Abs(s[providers.Baseline]-0.1) > 0.03 {
		t.Errorf("5000 sticky clients: shares %v, want about 10%% each", s)
	}
}

func TestEpisodesColdStartAndEvents(t *testing.T) {
	t.Parallel()
	t.Run("instance episodes cover their share of time", func(t *testing.T) {
		t.Parallel()
		m := base()
		m.ErrorRate = 0
		// every instance errors 100% of the time it is in an episode: 10 s on, ~50 s off
		m.Cohorts.Stable.Episodes = &Episode{Every: 50 * time.Second, Duration: 10 * time.Second, ErrorRate: 0.999}
		reqs := collect(m, fixed{}, 30*time.Minute, 5)
		fails := 0
		for _, q := range reqs {
			if q.Status >= 500 {
				fails++
			}
		}
		if got := float64(fails) / float64(len(reqs)); math.Abs(got-10.0/60) > 0.02 {
			t.Errorf("share of requests in an episode %.3f, want 10/60", got)
		}
	})
	t.Run("cold start fades", func(t *testing.T) {
		t.Parallel()
		m := base()
		m.ErrorRate = 0.01
		m.Cohorts.Canary.ColdStart = &ColdStart{Duration: 2 * time.Minute, ErrorFactor: 20}
		reqs := collect(m, fixed{Split: providers.Split{Canary: 5000, Baseline: 5000}}, 6*time.Minute, 6)
		rate := func(c providers.Cohort, from, to time.Duration) float64 {
			n, f := 0, 0
			for _, q := range reqs {
				if q.Cohort == c && !q.Time.Before(t0.Add(from)) && q.Time.Before(t0.Add(to)) {
					n++
					if q.Status >= 500 {
						f++
					}
				}
			}
			return float64(f) / float64(n)
		}
		// the first 10 s: factor ≈ 20 → ~19%; after 2 min: 1%
		if early, late := rate(providers.Canary, 0, 10*time.Second), rate(providers.Canary, 3*time.Minute, 6*time.Minute); early < 0.12 || late > 0.02 {
			t.Errorf("canary 5xx first 10 s %.3f (want ≈ 0.19), after the cold start %.3f (want ≈ 0.01)", early, late)
		}
		if b := rate(providers.Baseline, 0, 10*time.Second); b > 0.05 {
			t.Errorf("baseline has no cold start but errored %.3f in the first 10 s", b)
		}
	})
	t.Run("load bursts raise the rate", func(t *testing.T) {
		t.Parallel()
		m := base()
		m.Events = []Event{{Episode: Episode{Every: 30 * time.Second, Duration: 30 * time.Second}, Load: 3}}
		n := len(collect(m, fixed{}, 20*time.Minute, 7))
		// half the time at 3x: mean 2x
		if want := 200 * 1200 * 2.0; math.Abs(float64(n)/want-1) > 0.1 {
			t.Errorf("%d requests, want about %.0f", n, want)
		}
	})
}

func TestGeneratorIsDeterministic(t *testing.T) {
	t.Parallel()
	m := base()
	m.Clients = &Clients{Count: 50, Sticky: true, Heterogeneity: Heterogeneity{Rate: 1, Latency: 0.3, Errors: 1}}
	m.Cohorts.Canary.Episodes = &Episode{Every: time.Minute, Duration: 5 * time.Second, LatencyFactor: 2}
	r := fixed{Split: providers.Split{Canary: 1000, Baseline: 1000}}
	a, b := collect(m, r, time.Minute, 9), collect(m, r, time.Minute, 9)
	if !slices.Equal(a, b) {
		t.Error("the same seed gave different traffic")
	}
	if c := collect(m, r, time.Minute, 10); slices.Equal(a, c) {
		t.Error("different seeds gave the same traffic")
	}
	// generating in pieces gives the same requests as at once
	g := New(m, t0, r, [2]uint64{9, 1})
	var pieces []providers.Request
	for s := 1; s <= 240; s++ {
		g.Advance(t0.Add(time.Duration(s)*250*time.Millisecond), func(q providers.Request) { pieces = append(pieces, q) })
	}
	if !slices.Equal(a, pieces) {
		t.Errorf("advancing in 250 ms pieces gave %d requests, at once %d (or different ones)", len(pieces), len(a))
	}
}

// TestFinishQueueOrder pushes requests arriving in order with random (heavy-tailed) latencies,
// popping those finished before each arrival, and checks every request comes out once, in the
// order of its finish time.
func TestFinishQueueOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var q finishQueue
	var out, want []float64
	at := 0.0
	for i := range 20000 {
		at += rng.ExpFloat64() / 200
		for q.len() > 0 && q.first().fin < at {
			out = append(out, q.pop().fin)
		}
		fin := at + 0.08*math.Exp(0.45*rng.NormFloat64())
		if i%50 == 0 {
			fin = at + 0.15*math.Pow(1-rng.Float64(), -1/1.5) // a Pareto tail, up to minutes
		}
		q.push(pendingReq{fin: fin})
		want = append(want, fin)
	}
	for q.len() > 0 {
		out = append(out, q.pop().fin)
	}
	slices.Sort(want)
	if !slices.Equal(out, want) {
		t.Fatalf("popped %d requests, pushed %d, or out of order", len(out), len(want))
	}
}
