package sequential

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestWindowBetIsFair: given a window's values and how many of its clients are canary, every
// assignment of that many canary clients is equally likely under "the canary is the baseline", and
// the bet outcome averaged over all of them is 0 and never below -1 — what makes 1 + f x a fair,
// positive bet (clusters.go). Checked by enumerating every assignment of random windows, with ties
// and zeros as 5xx shares have them.
func TestWindowBetIsFair(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(14, 1))
	for w := range 300 {
		n := 2 + rng.IntN(7)
		ys := make([]float64, n)
		for i := range ys {
			if rng.IntN(3) > 0 {
				ys[i] = float64(rng.IntN(4)) / 100 // 0-3 errors of 100 requests: many ties
			} else {
				ys[i] = rng.Float64()
			}
		}
		nc := 1 + rng.IntN(n-1)
		var sum float64
		var count, valid int
		canary := make([]bool, n)
		for mask := range 1 << n {
			k := 0
			for i := range n {
				canary[i] = mask>>i&1 == 1
				if canary[i] {
					k++
				}
			}
			if k != nc {
				continue
			}
			count++
			x, ok := windowBet(ys, canary, nil)
			if !ok {
				continue
			}
			valid++
			if x < -1-1e-12 {
				t.Fatalf("window %d %v, %d canary: x = %v below -1", w, ys, nc, x)
			}
			sum += x
		}
		if valid != 0 && valid != count {
			t.Fatalf("window %d %v: the bet is made for %d of %d assignments; it must not depend on the assignment", w, ys, valid, count)
		}
		if math.Abs(sum/float64(count)) > 1e-12 {
			t.Errorf("window %d %v, %d canary: mean bet outcome %v over %d assignments, want 0", w, ys, nc, sum/float64(count), count)
		}
	}
}

// clientWorld is canary and baseline traffic from heterogeneous clients: client i sends a share
// of the requests in proportion to rate[i], fails with probability errs[i] and is lat[i] times as
// slow as the typical request (log-sd 1.0, 1.0 and 0.3, as the simulator's sticky scenarios).
type clientWorld struct {
	cum, errs, lat []float64
	canary         []bool // sticky: the client's cohort
	names          []string
	secs           int // how long run runs (default 600 s)
}

func newClientWorld(rng *rand.Rand, n int) *clientWorld {
	w := &clientWorld{cum: make([]float64, n), errs: make([]float64, n), lat: make([]float64, n), canary: make([]bool, n), names: make([]string, n)}
	sum := 0.0
	for i := range n {
		sum += math.Exp(rng.NormFloat64())
		w.cum[i] = sum
		w.errs[i] = min(1, 0.005*math.Exp(rng.NormFloat64()-0.5))
		w.lat[i] = math.Exp(0.3 * rng.NormFloat64())
		w.canary[i] = rng.IntN(2) == 0
		w.names[i] = fmt.Sprintf("client-%d", i)
	}
	for i := range w.cum {
		w.cum[i] /= sum
	}
	return w
}

// run feeds an analyzer 10 minutes at rps requests/s (canary and baseline together) in 1 s
// batches: sticky routes each client to its cohort, else each request is a coin flip; addErr is
// the canary's added 5xx probability; keys says whether samples carry the client.
func (w *clientWorld) run(t *testing.T, rng *rand.Rand, cfg Config, sticky, keys bool, addErr float64) *Analyzer {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	const rps = 100
	secs := w.secs
	if secs == 0 {
		secs = 600
	}
	for sec := range secs {
		var b Batch
		for range rps {
			u := rng.Float64()
			i := 0
			for i < len(w.cum)-1 && w.cum[i] < u {
				i++
			}
			canary := w.canary[i]
			if !sticky {
				canary = rng.IntN(2) == 0
			}
			p := w.errs[i]
			if canary {
				p += addErr
			}
			s := Sample{LatencyMS: 80 * w.lat[i] * math.Exp(0.45*rng.NormFloat64()), Failed: rng.Float64() < p,
				At: t0.Add(time.Duration(sec)*time.Second + time.Duration(rng.Float64()*float64(time.Second)))}
			if keys {
				s.Client = w.names[i]
			}
			if canary {
				b.Canary = append(b.Canary, s)
			} else {
				b.Baseline = append(b.Baseline, s)
			}
		}
		b.Until = t0.Add(time.Duration(sec+1) * time.Second)
		if a.Observe(b) == Fail {
			break
		}
	}
	return a
}

// TestStickyClientsAreJudgedByClient: 80 heterogeneous clients, each pinned to one cohort, and a
// canary no worse than the baseline. Judged by requests (no client keys) the two user
// populations differ and many rollouts fail (9 of 20 with these seeds); with client keys the analyzer notices that every
// client stays on one cohort and judges clients, and none fails. The same clients routed per
// request are judged by requests (the split is noticed as per request) and do not fail either.
// Seeded: the counts are what these seeds give, not a rate estimate.
func TestStickyClientsAreJudgedByClient(t *testing.T) {
	t.Parallel()
	const rollouts = 20
	cfg := Config{NoGuard: true}
	for _, tc := range []struct {
		name         string
		sticky, keys bool
		maxFails     int
		minFails     int
		mode         stickiness
	}{
		{"sticky, judged by requests", true, false, rollouts, rollouts / 4, stickyUnknown},
		{"sticky, judged by clients", true, true, 0, 0, stickyYes},
		{"per-request split with client keys", false, true, 0, 0, stickyNo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fails := 0
			for r := range rollouts {
				rng := rand.New(rand.NewPCG(uint64(r), 14))
				a := newClientWorld(rng, 80).run(t, rng, cfg, tc.sticky, tc.keys, 0)
				if a.Verdict() == Fail {
					fails++
				}
				if a.clusters.mode != tc.mode {
					t.Errorf("rollout %d: stickiness %d, want %d", r, a.clusters.mode, tc.mode)
				}
			}
			if fails < tc.minFails || fails > tc.maxFails {
				t.Errorf("%d of %d good canaries failed, want %d..%d", fails, rollouts, tc.minFails, tc.maxFails)
			}
		})
	}
}

// TestStickyRegressionFails: the client-level test still catches a canary that fails 5 pp more
// often on every client, and says it judged clients.
func TestStickyRegressionFails(t *testing.T) {
	t.Parallel()
	caught := 0
	const rollouts = 10
	for r := range rollouts {
		rng := rand.New(rand.NewPCG(uint64(r), 15))
		a := newClientWorld(rng, 80).run(t, rng, Config{NoGuard: true}, true, true, 0.05)
		if a.Verdict() != Fail {
			continue
		}
		caught++
		rep := a.Report()
		if d := rep.Decisions[0]; d.Metric != MetricErrors || d.Verdict != Fail || !d.Clients || d.Canary == 0 || d.Baseline == 0 {
			t.Errorf("rollout %d: decision %+v, want a 5xx-rate Fail judged by clients", r, d)
		}
	}
	if caught < rollouts-1 {
		t.Errorf("%d of %d canaries 5 pp worse caught, want at least %d", caught, rollouts, rollouts-1)
	}
}

// TestOneCallerIsPerRequest: a service called from one address (a load balancer, a test client)
// has one client key in both cohorts; the split is then known to be per request after its fourth
// request and the request-level tests judge, catching a canary 5 pp worse.
func TestOneCallerIsPerRequest(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 14))
	w := newClientWorld(rng, 1)
	w.errs[0] = 0.005
	a := w.run(t, rng, Config{NoGuard: true}, false, true, 0.05)
	if a.clusters.mode != stickyNo {
		t.Fatalf("stickiness %d, want per request (%d)", a.clusters.mode, stickyNo)
	}
	if a.Verdict() != Fail {
		t.Fatalf("verdict %s, want fail", a.Verdict())
	}
	if d := a.Report().Decisions[0]; d.Verdict != Fail || d.Clients {
		t.Errorf("decision %+v, want a request-level 5xx-rate Fail", d)
	}
}

// TestFewClients: with sticky cohorts and no Fail test past half its threshold, a step that
// cannot settle its margins may move on (only more clients can decide); never when the cohorts are
// not sticky, nor once evidence of a regression builds up.
func TestFewClients(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 14))
	w := newClientWorld(rng, 80)
	for _, tc := range []struct {
		name           string
		sticky, keys   bool
		addErr         float64
		cfg            Config
		wantFewClients bool
	}{
		{"declared sticky, good canary, first 30 s", true, true, 0, Config{NoGuard: true, StickyClients: true}, true},
		{"per request", false, true, 0, Config{NoGuard: true}, false},
		{"declared sticky, 5 pp worse", true, true, 0.05, Config{NoGuard: true, StickyClients: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.secs = 0
			if tc.wantFewClients {
				w.secs = 30 // before the request-level Pass
			}
			a := w.run(t, rand.New(rand.NewPCG(4, 14)), tc.cfg, tc.sticky, tc.keys, tc.addErr)
			if got := a.FewClients(); got != tc.wantFewClients {
				t.Errorf("FewClients %v (verdict %s, fail evidence %.2f), want %v", got, a.Verdict(), a.FailEvidence(), tc.wantFewClients)
			}
		})
	}
}
