package rollout

import (
	"fmt"
	"time"
)

// Recovery: a rollout that ended Failed (its rollback could not be confirmed, e.g. the gateway was
// unreachable for all attempts) is not over: traffic may still reach the canary. Reopen lets
// run --resume and abort retry the rollback; RecoveryState lets abort --spec start from the
// gateway alone when the state is gone or unreadable.

// Reopen moves a Failed rollout (after Resume) back to RollingBack, outside the transition table:
// a person asked for the rollback to be retried. It does nothing in any other phase.
func (e *Engine) Reopen(reason string) error {
	e.mu.Lock()
	if e.st.Phase != Failed {
		e.mu.Unlock()
		return nil
	}
	from := e.st.Phase
	e.st.Phase = RollingBack
	e.st.Reason = reason
	e.st.Attempts = 0
	e.st.FinishedAt = time.Time{}
	st := e.st
	e.mu.Unlock()
	e.wake = time.Time{}
	e.log.Warn("reopening a failed rollout to retry its rollback", "reason", reason)
	if err := e.save(); err != nil {
		return fmt.Errorf("reopen failed rollout: %w", err)
	}
	e.emit(&Event{Type: EvTransition, From: from, Phase: RollingBack, Step: st.Step, Split: st.Split, Reason: reason})
	return nil
}

// RecoveryState is the state abort --spec writes when there is none (or it is unreadable): a new
// run in RollingBack with the spec's steps, so that resuming it sends all traffic to stable at the
// gateway (the gateway knows what to undo: the proxy's canary and baseline upstreams, Kong's targets
// and plugins tagged with the rollout) and tears the deployments down.
func RecoveryState(spec *Spec, runID, reason string, now time.Time) *State {
	weights := make([]float64, len(spec.Steps))
	for i, s := range spec.Steps {
		weights[i] = s.Weight
	}
	return &State{SchemaVersion: StateSchemaVersion, Service: spec.Service, RunID: runID, Phase: RollingBack,
		Steps: len(weights), Weights: weights, Control: spec.Analysis.Control, Reason: reason,
		Intervals: []Interval{}, StartedAt: now, UpdatedAt: now}
}
