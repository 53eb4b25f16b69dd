package sim

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/analysis/sequential"
	"github.com/canaryctl/canaryctl/providers"
)

func TestTrafficValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		mut  func(*Traffic)
		want string // "" valid, else a word of the error
	}{
		{"defaults", func(*Traffic) {}, ""},
		{"zero rps", func(tr *Traffic) { tr.RPS = 0 }, "rps"},
		{"diurnal 1", func(tr *Traffic) { tr.Diurnal = 1 }, "diurnal"},
		{"error rate too high in bursts", func(tr *Traffic) { tr.ErrorRate = 0.5 }, "errorRate"},
		{"tail weight negative", func(tr *Traffic) { tr.TailWeight = -0.1 }, "tailWeight"},
		{"NaN sigma", func(tr *Traffic) { tr.Sigma = math.NaN() }, "sigma"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := DefaultTraffic()
			tc.mut(&tr)
			err := tr.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestLatencyModel(t *testing.T) {
	t.Parallel()
	tr := DefaultTraffic()
	for _, p := range []float64{0.1, 0.5, 0.9, 0.99, 0.999} {
		if got := tr.LatencyCDF(tr.LatencyQuantile(p)); math.Abs(got-p) > 1e-9 {
			t.Errorf("CDF(Quantile(%v)) = %v", p, got)
		}
	}
	// the generator follows the model, and the P99 regression stretches the P99 by exactly its factor
	st := newStream(tr, 1, rand.NewPCG(1, 2))
	m := canaryModel{sc: Scenario{P99Factor: 1.5}, q90: tr.LatencyQuantile(0.9), q99: tr.LatencyQuantile(0.99)}
	var base, canary []float64
	for len(base) < 200000/raceScale {
		sec := st.next()
		if sec.load != 1 {
			continue
		}
		for _, q := range sec.cand {
			base = append(base, q.base)
			canary = append(canary, m.latency(q.base))
		}
	}
	slices.Sort(base)
	slices.Sort(canary)
	q := func(s []float64, p float64) float64 { return s[int(p*float64(len(s)))] }
	for _, p := range []float64{0.5, 0.99} {
		if got, want := q(base, p), tr.LatencyQuantile(p); math.Abs(got/want-1) > 0.03 {
			t.Errorf("generated P%v %v ms, model %v ms", 100*p, got, want)
		}
	}
	// the map is monotone and sends the model's P99 to 1.5 times itself, so the canary's P99 is 1.5
	// times the baseline's; empirically within sampling error
	if got, want := m.latency(m.q99), 1.5*m.q99; math.Abs(got-want) > 1e-9 {
		t.Errorf("regressed P99 %v, want %v", got, want)
	}
	for x := 1.0; x < 2000; x += 0.5 {
		if m.latency(x+0.5) < m.latency(x) {
			t.Fatalf("latency map not monotone at %v ms", x)
		}
	}
	if r := q(canary, 0.99) / q(base, 0.99); math.Abs(r-1.5) > 0.02 {
		t.Errorf("empirical canary P99 / baseline P99 = %v, want about 1.5", r)
	}
	if q(canary, 0.5) != q(base, 0.5) {
		t.Errorf("P99 regression moved the median: %v vs %v", q(canary, 0.5), q(base, 0.5))
	}
}

func TestStreamRate(t *testing.T) {
	t.Parallel()
	tr := DefaultTraffic()
	tr.Diurnal, tr.BurstEvery = 0, 1e12 // constant load
	st := newStream(tr, 0.2, rand.NewPCG(3, 4))
	var m canaryModel
	var r routed
	var canary, baseline, stable int64
	const secs = 2000
	for range secs {
		route(st.next(), 0.025, m, &r)
		canary += int64(len(r.canary))
		baseline += int64(len(r.baseline))
		stable += r.stableN
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"canary", float64(canary), 5 * secs}, {"baseline", float64(baseline), 5 * secs}, {"stable", float64(stable), 190 * secs}} {
		if math.Abs(c.got/c.want-1) > 0.03 {
			t.Errorf("%s requests %v, want about %v", c.name, c.got, c.want)
		}
	}
}

// scoreJudge is a fake Kayenta judge that always returns one score, to check the schedule.
func scoreJudge(score float64, calls *int) KayentaJudge {
	return func(p99, rate providers.Pair, _ *rand.Rand) (float64, error) {
		*calls++
		if len(p99.Canary) == 0 || len(p99.Canary) != len(rate.Baseline) {
			return 0, nil
		}
		return score, nil
	}
}

func TestKayentaModeSchedule(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		score   float64
		outcome Outcome
		seconds float64
		calls   int
	}{
		// judgements at 1:30, 2:30, 3:30, 4:30 and 5:00 of each 5-minute step
		{"pass promotes after all three steps", 100, Promoted, 900, 15},
		{"fail-fast at the first judgement", 50, RolledBack, 90, 1},
		{"marginal at the end of the first step pauses", 80, Paused, 300, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			k := newKayentaMode(DefaultSchedule(), canaryModel{}, scoreJudge(tc.score, &calls), rand.New(rand.NewPCG(1, 1)))
			st := newStream(DefaultTraffic(), 0.2, rand.NewPCG(5, 6))
			for i := 0; i < 10000 && !k.observe(st.next()); i++ {
			}
			r := k.result()
			if r.outcome != tc.outcome || r.seconds != tc.seconds || calls != tc.calls {
				t.Fatalf("outcome %v at %v s after %d judgements, want %v at %v s after %d", r.outcome, r.seconds, calls, tc.outcome, tc.seconds, tc.calls)
			}
			if r.exposed == 0 {
				t.Error("no canary requests counted")
			}
		})
	}
}

func TestRunDeterministicAndMeetsTargetsOnASmallSample(t *testing.T) {
	t.Parallel()
	k, err := NewKayentaJudge(DefaultSchedule())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Rollouts: 40 / raceScale, Seed: 7, Traffic: DefaultTraffic(), Schedule: DefaultSchedule(),
		Sequential: sequential.DefaultConfig(), Kayenta: k}
	a, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.Elapsed, b.Elapsed = "", ""
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Fatal("two runs with the same seed differ")
	}
	byName := map[string]ScenarioResult{}
	for _, r := range a.Results {
		byName[r.Scenario.Name] = r
		if len(r.Modes) != 2 || r.Modes[0].Mode != ModeKayenta || r.Modes[1].Mode != ModeSequential {
			t.Fatalf("%s: modes %+v", r.Scenario.Name, r.Modes)
		}
	}
	seq := func(name string) ModeStats { return byName[name].Modes[1] }
	if s := seq("A/A"); s.RolledBack > 1 {
		t.Errorf("A/A: %d of %d false rollbacks", s.RolledBack, s.Rollouts)
	}
	if s := seq("10% 5xx"); s.RolledBack != s.Rollouts || s.MedianRollbackSeconds >= 10 {
		t.Errorf("10%% 5xx: %d of %d rolled back, median %v s", s.RolledBack, s.Rollouts, s.MedianRollbackSeconds)
	}
	if s := seq("+20ms median"); s.RolledBack < s.Rollouts-1 {
		t.Errorf("+20 ms: %d of %d rolled back", s.RolledBack, s.Rollouts)
	}
	var md bytes.Buffer
	if err := a.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(md.String(), "\n| "); n != 2*len(DefaultScenarios())+1 { // and the header
		t.Errorf("markdown has %d table rows, want %d:\n%s", n, 2*len(DefaultScenarios()), md.String())
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	good := Config{Rollouts: 1, Traffic: DefaultTraffic(), Schedule: DefaultSchedule()}
	cases := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"no rollouts", func(c *Config) { c.Rollouts = 0 }, "rollouts"},
		{"bad traffic", func(c *Config) { c.Traffic.RPS = -1 }, "rps"},
		{"no steps", func(c *Config) { c.Schedule.Steps = nil }, "steps"},
		{"step too large", func(c *Config) { c.Schedule.Steps = []float64{60} }, "steps[0]"},
		{"max bake below min bake", func(c *Config) { c.Schedule.MaxBake = time.Second }, "maxBake"},
		{"bad alpha", func(c *Config) { c.Sequential.Alpha = 3 }, "alpha"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := good
			c.Schedule.Steps = slices.Clone(good.Schedule.Steps)
			tc.mut(&c)
			if _, err := Run(t.Context(), c); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestLooksMatchTheEngineLookInterval(t *testing.T) {
	t.Parallel()
	if got := time.Duration(looksPerSecond) * sequential.DefaultLookInterval; got != time.Second {
		t.Fatalf("looksPerSecond %d x sequential.DefaultLookInterval %s = %s, want 1s", looksPerSecond, sequential.DefaultLookInterval, got)
	}
}
