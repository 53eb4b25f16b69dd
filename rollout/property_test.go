package rollout

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
)

// TestNoPathLeavesTrafficOnTheCanary drives many rollouts through random faults (gateway, metrics,
// deployer), random verdicts and random control requests, and checks the end: promoted with the canary
// as stable, or rolled back with the split at zero and both deployments gone, or Failed only when the
// gateway refused every rollback attempt. Seeded, so a failure is reproducible.
func TestNoPathLeavesTrafficOnTheCanary(t *testing.T) {
	t.Parallel()
	methods := []string{"SetSplit", "SetUpstreams", "Split", "Promote"}
	for seed := uint64(1); seed <= 120; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			// Each seed has its own state directory and fakes. The test waits on the store's fsyncs
			// (0.9 s of CPU in 20 s here), so seeds in parallel finish sooner at no CPU cost.
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, 99))
			spec := testSpec()
			spec.Steps[r.IntN(3)].Approval = r.IntN(4) == 0
			spec.PauseTimeout = 20 * time.Minute
			h := newHarness(t, spec, func(c *Config) { c.RollbackAttempts = 4 })
			rollbackFaults := 0
			if r.IntN(5) == 0 {
				rollbackFaults = r.IntN(6) // 4 or more: Failed is the honest end
				h.gw.Fail("Rollback", rollbackFaults, nil)
			}
			if r.IntN(3) == 0 {
				h.gw.Fail(methods[r.IntN(len(methods))], 1+r.IntN(3), nil)
			}
			if r.IntN(4) == 0 {
				h.deployer.Fail("Deploy", 1, nil)
			}
			if r.IntN(3) == 0 {
				h.metrics.Fail("Pair", r.IntN(6), nil)
			}
			switch r.IntN(4) {
			case 0:
				h.metrics.Set(fake.Worse(10, "5xx-rate", 2))
			case 1:
				h.metrics.Set(fake.Worse(10, "p99-latency", 2))
			}
			actions := []Action{ActionPause, ActionResume, ActionPromote, ActionAbort}
			var p Phase
			for i := 0; i < 400; i++ {
				if r.IntN(12) == 0 {
					h.post(actions[r.IntN(len(actions))])
				}
				if st := h.eng.State(); st.Phase == Paused && r.IntN(3) == 0 {
					h.clock.Advance(time.Duration(r.IntN(10)) * time.Minute)
				}
				if p = h.tick(t.Context()); p.Terminal() {
					break
				}
			}
			for i := 0; i < 200 && !p.Terminal(); i++ { // nobody answers a pause: the timeout ends it
				h.clock.Advance(time.Minute)
				p = h.tick(t.Context())
			}
			st := h.eng.State()
			switch p {
			case Promoted:
				if got := h.gw.Upstreams(providers.Stable); len(got) != 1 || got[0] != "http://127.0.0.1:18002" || h.gw.Current() != (providers.Split{}) {
					t.Fatalf("promoted but stable %v split %v", got, h.gw.Current())
				}
			case RolledBack:
				if h.gw.Current() != (providers.Split{}) || len(h.gw.Upstreams(providers.Canary)) != 0 || h.deployer.Deployed(providers.Baseline) {
					t.Fatalf("rolled back but split %v canary %v deployer %v (%s)", h.gw.Current(), h.gw.Upstreams(providers.Canary), h.deployer.Calls(), st.Reason)
				}
				if !st.PromoteAttempted && h.deployer.Deployed(providers.Canary) {
					t.Fatalf("canary still deployed: %v", h.deployer.Calls())
				}
			case Failed:
				if rollbackFaults < 4 {
					t.Fatalf("Failed with %d rollback faults (limit 4): %s", rollbackFaults, st.Reason)
				}
			default:
				t.Fatalf("did not end: %s (%s)", p, st.Reason)
			}
			if disk, err := h.store.LoadState(); err != nil || disk.Phase != p {
				t.Fatalf("state on disk %v %v", disk, err)
			}
		})
	}
}
