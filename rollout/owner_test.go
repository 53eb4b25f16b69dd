package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// TestFenceStopsTheEngine: once the fence reports the lease lost, the next tick returns an error
// wrapping ErrLeaseLost without a gateway call or a state write, also when the lease is lost while
// a handler runs (its outcome is not recorded), and interrupts no longer roll back.
func TestFenceStopsTheEngine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		midHandler bool // lost while the handler judges (its transition to RollingBack is not recorded)
	}{
		{name: "lost between ticks"},
		{name: "lost during a handler", midHandler: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var lost atomic.Bool
			lostErr := fmt.Errorf("%w: test", providers.ErrLeaseLost)
			fence := func() error {
				if lost.Load() {
					return lostErr
				}
				return nil
			}
			h := newHarness(t, testSpec(), func(c *Config) { c.Fence = fence })
			h.until(Analyzing)
			before := h.eng.State()
			calls := len(h.gw.Calls())
			if tc.midHandler {
				h.clock.Advance(time.Hour) // the next tick judges
				h.metrics.Set(func(providers.Metric, providers.Window) (providers.Pair, error) {
					lost.Store(true)                                                                                 // the lease runs out while the handler fetches metrics
					return providers.Pair{Baseline: []float64{1, 1, 1, 1, 1}, Canary: []float64{9, 9, 9, 9, 9}}, nil // fails: a transition to RollingBack
				})
			} else {
				lost.Store(true)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if !tc.midHandler {
				cancel() // a SIGTERM now must not roll back: this runner no longer owns the rollout
			}
			_, err := h.eng.Tick(ctx)
			if !errors.Is(err, providers.ErrLeaseLost) {
				t.Fatalf("Tick after the lease was lost: %v, want ErrLeaseLost", err)
			}
			if got := h.gw.Calls()[calls:]; len(got) != 0 {
				t.Errorf("gateway calls after the lease was lost: %v", got)
			}
			st, err := h.store.LoadState()
			if err != nil {
				t.Fatal(err)
			}
			if st.Phase != before.Phase || st.Interrupted {
				t.Errorf("recorded %s (interrupted %v) after losing the lease in %s", st.Phase, st.Interrupted, before.Phase)
			}
		})
	}
}
