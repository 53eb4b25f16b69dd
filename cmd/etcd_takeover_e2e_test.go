//go:build e2e

package cmd

// The etcd takeover in every phase: five end-to-end rollouts one after the other (two canaryctl
// processes, an etcd and load each; about 2 minutes), so it runs with the other slow end-to-end
// rollouts in make e2e (go test -tags e2e -run TestEtcdTakeover ./cmd/), not in make ci.

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/etcdtest"
)

// TestEtcdTakeover: a runner SIGKILLed in each phase is taken over by a standby on another state
// directory (another machine: it has no spec, only the etcd endpoint) within leaseTTL + 5 s, which
// finishes the rollout with no traffic left on the canary.
func TestEtcdTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end rollouts take seconds")
	}
	etcdtest.Binary(t)
	t.Parallel()
	for _, tc := range []struct {
		name    string
		phase   rollout.Phase
		steps   string
		abort   bool // abort from a third machine once analyzing
		approve bool // the rollout waits for approval: promote it from a third machine
		code    int
	}{
		{name: "deploying", phase: rollout.Deploying, steps: fastSteps, code: ExitOK},
		{name: "analyzing", phase: rollout.Analyzing, steps: fastSteps, code: ExitOK},
		{name: "paused for approval", phase: rollout.Paused, steps: "  - {weight: 10, duration: 5s, interval: 1s, warmup: 0s}\n  - {weight: 50, duration: 5s, interval: 1s, warmup: 0s, approval: true}\n", approve: true, code: ExitOK},
		{name: "promoting", phase: rollout.Promoting, steps: "  - {weight: 10, duration: 5s, interval: 1s, warmup: 0s}\n", code: ExitOK},
		{name: "rolling back", phase: rollout.RollingBack, steps: fastSteps, abort: true, code: ExitFail},
	} {
		// One case at a time: each runs two canaryctl processes, an etcd and load; in parallel they
		// would load the machine for the other packages' latency-judging tests.
		t.Run(tc.name, func(t *testing.T) {
			w := newEtcdWorld(t)
			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			go w.load(ctx, 100, 8000)
			spec := w.etcdSpec(t, tc.steps, testLeaseTTL)
			a, aout := rtChild(t, map[string]string{"CANARYCTL_PROXY_TOKEN": rtToken}, "run", "--spec", spec, "--state-dir", t.TempDir())
			// The standby (another machine: its own state dir, the spec read from etcd) waits.
			w.waitState(t, "started", func(*rollout.State) bool { return true })
			b, bout := rtChild(t, w.vars(), "run", "--resume", "--service", "shop", "--standby", "--state-dir", t.TempDir())
			if tc.abort {
				w.waitState(t, "analyzing", func(s *rollout.State) bool { return s.Phase == rollout.Analyzing })
				if code, out, serr := rtRun(t.Context(), w.vars(), "abort", "shop", "--state-dir", t.TempDir()); code != ExitOK {
					t.Fatalf("abort from a third machine: %d %s %s", code, out, serr)
				}
			}
			st := w.waitState(t, "in "+string(tc.phase), func(s *rollout.State) bool { return s.Phase == tc.phase })
			if err := a.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			_ = a.Wait()
			t.Logf("killed the runner in %s (step %d, split %s)", st.Phase, st.Step+1, st.Split)
			if !st.Phase.Terminal() {
				took := w.waitState(t, "written by the standby", func(s *rollout.State) bool { return s.PID == b.Process.Pid })
				if d := time.Since(killed); d > testLeaseTTL+5*time.Second {
					t.Errorf("the standby took over after %s, want within leaseTTL + 5s (%s)", d, testLeaseTTL+5*time.Second)
				} else {
					t.Logf("taken over in %s (phase %s)", d.Round(time.Millisecond), took.Phase)
				}
			}
			if tc.approve {
				w.waitState(t, "paused by the standby", func(s *rollout.State) bool { return s.Phase == rollout.Paused && s.PID == b.Process.Pid })
				code, out, serr := rtRun(t.Context(), w.vars(), "status", "shop")
				if code != ExitOK || !strings.Contains(out, "phase:     Paused") || !strings.Contains(out, fmt.Sprintf("pid %d (etcd lease)", b.Process.Pid)) {
					t.Fatalf("status from a third machine: %d\n%s%s", code, out, serr)
				}
				code, out, serr = rtRun(t.Context(), w.vars(), "promote", "shop", "--state-dir", t.TempDir())
				if code != ExitOK {
					t.Fatalf("promote from a third machine: %d %s %s", code, out, serr)
				}
			}
			err := b.Wait()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			if code != tc.code {
				t.Fatalf("standby exit %d, want %d\nstandby:\n%s\nfirst runner:\n%s", code, tc.code, bout, aout)
			}
			if s, _ := w.px.Split(t.Context()); s != (providers.Split{}) {
				t.Fatalf("split after the standby finished: %v", s)
			}
			final, _ := w.obs.LoadState()
			if tc.code == ExitOK && !strings.Contains(w.pxState(t), w.canary.URL) {
				t.Errorf("canary not promoted: %s (state %+v)", w.pxState(t), final)
			}
		})
	}
}
