package cmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

// newRunID names a new rollout: its start time and a random suffix, so that two runners that start
// the same second on two machines never share a run id (a shared id lets one take over the other's
// lease).
func newRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b[:])
}

// claimGateway takes the service at the gateway for the run: a new run (resume false) only when no
// other run holds it (or, with force, its lease expired); a resumed run (holding the state store's
// lock) takes over the lease of its own run.
func claimGateway(ctx context.Context, rt *assembly, service, runID string, resume, force bool) error {
	c := providers.Claim{Service: service, RunID: runID, Holder: rollout.ThisHolder(), Resume: resume, Force: force}
	if err := rt.keeper.Claim(ctx, c); err != nil {
		return fmt.Errorf("%s: %w", service, err)
	}
	return nil
}

// finishOwnership releases the gateway when the rollout ended; a paused or stopped one keeps its
// lease until it expires (the next runner resumes or aborts it).
func finishOwnership(ctx context.Context, env *Env, rt *assembly) {
	if rt.eng.State().Phase.Terminal() {
		if err := rt.keeper.Release(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintf(env.Stderr, "warning: %v (it expires by itself within %s)\n", err, rt.keeper.TTL())
		}
		return
	}
	rt.keeper.Stop()
}

// startOrResume claims the gateway and starts the rollout, or resumes it and then takes over its
// lease. A new run is refused before anything is deployed while another run owns the service.
func startOrResume(ctx context.Context, rt *assembly, service string, o *runOptions) error {
	if o.standby {
		w, ok := rt.store.(interface{ LockWait(context.Context) error })
		if !o.resume || !ok {
			return usageErrorf("--standby needs --resume and the etcd state store (state.type etcd or CANARYCTL_ETCD_ENDPOINTS)")
		}
		if err := w.LockWait(ctx); err != nil {
			return fmt.Errorf("%s: wait to take the rollout over: %w", service, err)
		}
	}
	if o.resume {
		if err := rt.eng.Resume(ctx); err != nil {
			return err
		}
		st := rt.eng.State()
		if st.Phase == rollout.Failed {
			// The rollback could not be confirmed: traffic may still reach the canary. Retry it.
			if err := rt.eng.Reopen("resumed after Failed (" + st.Reason + "): retrying the rollback"); err != nil {
				rt.eng.Close()
				return err
			}
			st = rt.eng.State()
		}
		if st.Phase.Terminal() {
			return nil
		}
		if err := claimGateway(ctx, rt, service, st.RunID, true, o.forceTakeover); err != nil {
			rt.eng.Close()
			return err
		}
		return nil
	}
	if err := claimGateway(ctx, rt, service, rt.runID, false, o.forceTakeover); err != nil {
		return err
	}
	if err := rt.eng.Start(ctx); err != nil {
		_ = rt.keeper.Release(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// leaseTTL is the spec's state.leaseTTL, or the default.
func leaseTTL(spec *rollout.Spec) time.Duration { return spec.State.Lease() }

// retryRun applies --run-id (or $CANARYCTL_RUN_ID): when the store holds a rollout with that id, this
// run continues it (waiting for the previous attempt's lease with the etcd store) or reports how it
// ended, instead of starting a second rollout; any other id starts a new rollout with it.
func retryRun(env *Env, o *runOptions, store rollout.StateStore) error {
	if o.runID == "" {
		o.runID = env.Getenv("CANARYCTL_RUN_ID")
	}
	if o.runID == "" || o.resume {
		return nil
	}
	if strings.ContainsAny(o.runID, ",/ ") || len(o.runID) > 128 {
		return usageErrorf("--run-id %q: use at most 128 characters without ',', '/' or spaces (e.g. the CI job's name)", o.runID)
	}
	st, err := store.LoadState()
	if err != nil || st.RunID != o.runID {
		return nil // a new rollout named o.runID (an unreadable state refuses it in Start)
	}
	fmt.Fprintf(env.Stderr, "%s: run %s is recorded (%s): continuing it instead of starting another\n", st.Service, st.RunID, st.Phase)
	o.resume = true
	if _, ok := store.(interface{ LockWait(context.Context) error }); ok && !st.Phase.Terminal() {
		o.standby = true // the previous attempt's lease may still run: wait for it
	}
	return nil
}
