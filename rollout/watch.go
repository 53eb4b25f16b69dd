package rollout

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/canaryctl/canaryctl/providers"
)

// GatewayRecorder is implemented by a gateway that can say what it looked like before the rollout
// (weights, drained instances, balancing settings) and restore exactly that at the end, also from
// another process: the engine records Original in the state before Deploying changes anything, and
// hands it back with SetOriginal when a rollout is resumed or aborted.
type GatewayRecorder interface {
	Original(ctx context.Context) (json.RawMessage, error)
	SetOriginal(raw json.RawMessage) error
}

// RolloutRecaller is implemented by a gateway that must know what the rollout's state says it did
// when it did not do it in this process (run --resume, an abort from another process): the
// addresses of the cohorts, and whether a promotion was attempted (Kong: a promotion deletes the
// old stable targets, and a rollback after it creates them again from the recorded original, then
// deletes the canary's targets, which the promotion may already have untagged). The engine calls
// Recall once, after SetOriginal, before the resumed run's first gateway call.
type RolloutRecaller interface {
	Recall(addrs map[providers.Cohort][]string, promoteAttempted bool) error
}

// LivenessChecker is implemented by a Deployer that keeps watching its deployments after they were
// ready (a process that exited, a readiness probe failing several times in a row, an exec status
// command failing). Alive must be cheap (it is asked on every tick); it returns nil while cohort c
// is alive, and why not otherwise.
type LivenessChecker interface {
	Alive(ctx context.Context, c providers.Cohort) error
}

// recordOriginal stores the gateway's original state in the rollout state, once, before anything
// moves.
func (e *Engine) recordOriginal(ctx context.Context) error {
	rec, ok := e.cfg.Gateway.(GatewayRecorder)
	if !ok || e.State().Gateway != nil {
		return nil
	}
	var raw json.RawMessage
	if err := e.call(ctx, func(c context.Context) (err error) { raw, err = rec.Original(c); return err }); err != nil {
		return fmt.Errorf("record the gateway's original state: %w", err)
	}
	e.mu.Lock()
	e.st.Gateway = raw
	e.mu.Unlock()
	return e.save()
}

// restoreOriginal gives a recorded original state back to the gateway (resume, abort).
func (e *Engine) restoreOriginal(st *State) error {
	rec, ok := e.cfg.Gateway.(GatewayRecorder)
	if !ok || len(st.Gateway) == 0 {
		return nil
	}
	if err := rec.SetOriginal(st.Gateway); err != nil {
		return fmt.Errorf("give the gateway its recorded original state: %w", err)
	}
	return nil
}

// recall tells the gateway what the state says the rollout registered and attempted (resume, abort).
// A promotion counts as attempted once its intent is recorded: a run killed inside Promote left the
// intent, and the gateway may be anywhere between the two shapes.
func (e *Engine) recall(st *State) error {
	rc, ok := e.cfg.Gateway.(RolloutRecaller)
	if !ok {
		return nil
	}
	promoting := st.PromoteAttempted || st.Intent != nil && st.Intent.Op == "promote"
	if err := rc.Recall(st.Addresses, promoting); err != nil {
		return fmt.Errorf("give the gateway the rollout's recorded addresses: %w", err)
	}
	return nil
}

// notAlive returns why a deployed cohort is not alive any more, or "". A canary (or baseline)
// that died after it was ready must never be judged on the requests it served before, let alone
// promoted.
func (e *Engine) notAlive(ctx context.Context) string {
	lc, ok := e.cfg.Deployer.(LivenessChecker)
	if !ok {
		return ""
	}
	for _, c := range e.deployedCohorts() {
		if err := lc.Alive(ctx, c); err != nil {
			return fmt.Sprintf("the %s deployment is not alive: %v", c, err)
		}
	}
	return ""
}
