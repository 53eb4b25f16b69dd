package kong

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/canaryctl/canaryctl/providers"
)

// recall is what the rollout's state says this rollout did, for a process that did not do it
// itself (run --resume, an abort from another process), or what this process did.
type recall struct {
	// addrs are the baseline's and the canary's addresses (Kong targets).
	addrs map[providers.Cohort][]string
	// promoted: a promotion was attempted. It deletes the old stable targets (the documented
	// promoted shape), so a rollback after it creates again those the recorded original has and
	// the upstream lacks; before it, a missing stable target is someone else's doing and stays
	// missing.
	promoted bool
}

// Recall takes what the rollout's state says (rollout.RolloutRecaller): the cohorts' addresses and
// whether a promotion was attempted. The engine calls it on resume and abort, after SetOriginal.
func (r *Router) Recall(addrs map[providers.Cohort][]string, promoteAttempted bool) error {
	known := map[providers.Cohort][]string{}
	for _, c := range []providers.Cohort{providers.Baseline, providers.Canary} {
		for _, a := range addrs[c] {
			n, err := NormalizeAddress(a)
			if err != nil {
				return fmt.Errorf("kong: the state's %s address: %w", c, err)
			}
			known[c] = append(known[c], n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recall.addrs = known
	r.recall.promoted = r.recall.promoted || promoteAttempted
	return nil
}

// untaggedOurs reports whether t, which carries no tag of this rollout, is nevertheless its: a
// canary (or baseline) address of the rollout that a promotion untagged, and that was no target
// before the rollout (the recorded original says so).
func (r *Router) untaggedOurs(t target) bool {
	if len(t.Tags) != 0 || r.orig.Partial || r.original(t.Addr) {
		return false
	}
	for _, c := range []providers.Cohort{providers.Baseline, providers.Canary} {
		if slices.Contains(r.recall.addrs[c], t.Addr) || slices.Contains(r.st.cohorts[c], t.Addr) {
			return true
		}
	}
	return false
}

// deletedByPromotion returns the stable targets of the recorded original that the upstream lacks
// after a promotion was attempted: the promotion deleted them, and a rollback creates them again
// with their weights and tags. Nothing is returned without a recorded original (a guess could
// only restore mid-rollout weights) or when no promotion was attempted.
func (r *Router) deletedByPromotion(present []target) []OriginalTarget {
	if !r.recall.promoted || r.orig.Partial || r.orig.UpstreamID == "" {
		return nil
	}
	var out []OriginalTarget
	for _, o := range r.orig.Targets {
		if o.Weight > 0 && !slices.ContainsFunc(present, func(t target) bool { return t.Addr == o.Target }) {
			out = append(out, o)
		}
	}
	return out
}

// findGreen (bluegreen) looks the green upstream up when this process did not register the canary
// in it (an abort from another process, a resumed rollback): what the rollout put there must go
// too. A green upstream this rollout created carries its tag.
func (r *Router) findGreen(ctx context.Context) error {
	if r.st.greenID != "" {
		return nil
	}
	up, err := r.client.Upstreams.Get(ctx, ptr(r.cfg.GreenUpstream))
	switch {
	case errors.Is(err, providers.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("kong: roll back: find green upstream %q: %w", r.cfg.GreenUpstream, err)
	}
	r.st.greenID = deref(up.ID)
	r.st.greenCreated = slices.ContainsFunc(up.Tags, func(t *string) bool { return t != nil && *t == r.rolloutTag() })
	return nil
}

// promotedCanary (bluegreen) reports whether t is a canary target of this rollout that a promotion
// untagged: after a promotion was attempted, an untagged target at a canary address the state
// records.
func (r *Router) promotedCanary(t target) bool {
	return len(t.Tags) == 0 && r.recall.promoted && slices.Contains(r.recall.addrs[providers.Canary], t.Addr)
}
