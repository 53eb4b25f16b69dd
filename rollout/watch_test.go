package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
	"github.com/canaryctl/canaryctl/rollout/deploy"
)

// dyingDeployer is the fake deployer with liveness: a cohort can die after it was ready.
type dyingDeployer struct {
	*fake.Deployer
	mu   sync.Mutex
	dead map[providers.Cohort]error
}

func (d *dyingDeployer) Alive(_ context.Context, c providers.Cohort) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dead[c]
}

func (d *dyingDeployer) kill(c providers.Cohort) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead[c] = errors.New("process exited: signal: killed")
}

// TestDeadCohortIsNeverPromoted: a canary (or baseline) that dies after it was ready is rolled back
// at the next tick, before another interval is judged, in every phase that could lead to a
// promotion: analysing the first or the last step (whose final interval would pass), paused, and
// about to promote.
func TestDeadCohortIsNeverPromoted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cohort providers.Cohort
		at     func(h *harness) // bring the rollout to where the cohort dies
	}{
		{"canary, first step", providers.Canary, func(h *harness) { h.until(Analyzing) }},
		{"canary, last step before its final interval", providers.Canary, func(h *harness) {
			for h.eng.State().Step < 2 || h.eng.State().Phase != Analyzing || len(h.eng.State().Intervals) < 8 {
				h.tick(h.t.Context())
			}
		}},
		{"baseline, last step", providers.Baseline, func(h *harness) {
			for h.eng.State().Step < 2 || h.eng.State().Phase != Analyzing {
				h.tick(h.t.Context())
			}
		}},
		{"canary, between steps (before its larger share)", providers.Canary, func(h *harness) {
			for h.eng.State().Step < 1 || h.eng.State().Phase != Progressing {
				h.tick(h.t.Context())
			}
		}},
		{"canary, paused", providers.Canary, func(h *harness) { h.until(Analyzing); h.post(ActionPause); h.until(Paused) }},
		{"canary, about to promote", providers.Canary, func(h *harness) {
			for h.eng.State().Phase != Promoting {
				h.tick(h.t.Context())
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dd := &dyingDeployer{Deployer: fake.NewDeployer(), dead: map[providers.Cohort]error{}}
			h := newHarness(t, testSpec(), func(c *Config) { c.Deployer = dd })
			tc.at(h)
			judged := len(h.eng.State().Intervals)
			held, splits := h.eng.State().Split, len(h.gw.SplitHistory())
			dd.kill(tc.cohort)
			if p := h.tick(t.Context()); p != RollingBack {
				t.Fatalf("tick after the %s died: %s (%s), want RollingBack", tc.cohort, p, h.eng.State().Reason)
			}
			if n := len(h.eng.State().Intervals); n != judged {
				t.Errorf("%d intervals judged after the death", n-judged)
			}
			if r := h.eng.State().Reason; !strings.Contains(r, "not alive") || !strings.Contains(r, "killed") {
				t.Errorf("reason %q, want the cohort named not alive with its exit", r)
			}
			for _, s := range h.gw.SplitHistory()[splits:] {
				if s.Canary > held.Canary {
					t.Errorf("the canary's share went from %s to %s after the death", held, s)
				}
			}
			if p := h.finish(); p != RolledBack {
				t.Fatalf("ended %s, want RolledBack", p)
			}
			for _, tr := range h.transitions() {
				if strings.HasSuffix(tr, ">"+string(Promoted)) {
					t.Fatalf("promoted: %v", h.transitions())
				}
			}
		})
	}
}

// recordingGateway is the fake gateway with an original state to record and give back.
type recordingGateway struct {
	*fake.Gateway
	mu       sync.Mutex
	original string
	set      []string
}

func (g *recordingGateway) Original(context.Context) (json.RawMessage, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return json.RawMessage(g.original), nil
}

func (g *recordingGateway) SetOriginal(raw json.RawMessage) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return err
	}
	g.set = append(g.set, b.String())
	return nil
}

// TestOriginalStateIsRecordedAndGivenBack: the gateway's original state is recorded in the state
// before Deploying changes anything and handed back to the gateway of a resumed run (or an abort),
// never re-recorded from what the gateway looks like mid-rollout.
func TestOriginalStateIsRecordedAndGivenBack(t *testing.T) {
	t.Parallel()
	gw := &recordingGateway{Gateway: fake.NewGateway(), original: `{"targets":[{"target":"a:80","weight":100},{"target":"drained:80","weight":0}]}`}
	h := newHarness(t, testSpec(), func(c *Config) { c.Gateway = gw })
	h.until(Analyzing)
	if got := string(h.eng.State().Gateway); got != gw.original {
		t.Fatalf("state.gateway = %s, want %s", got, gw.original)
	}
	// a crash; the gateway now looks different, which must not matter
	h.eng.Close()
	gw.mu.Lock()
	gw.original = `{"targets":"mid-rollout"}`
	gw.mu.Unlock()
	h.open()
	if err := h.eng.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.post(ActionAbort)
	if p := h.finish(); p != RolledBack {
		t.Fatalf("ended %s", p)
	}
	if len(gw.set) != 1 || gw.set[0] != `{"targets":[{"target":"a:80","weight":100},{"target":"drained:80","weight":0}]}` {
		t.Fatalf("SetOriginal calls %v, want the recorded original once", gw.set)
	}
	if got := string(h.eng.State().Gateway); !strings.Contains(got, "drained") {
		t.Fatalf("state.gateway after resume = %s, want the original kept", got)
	}
}

// The process deployer is the engine's LivenessChecker.
var _ LivenessChecker = (*deploy.Deployer)(nil)
