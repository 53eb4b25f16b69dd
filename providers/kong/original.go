package kong

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/canaryctl/canaryctl/providers"
)

// Original is what the gateway looked like before the rollout touched it, recorded at preflight and
// kept in the rollout's state, so that a rollback, an abort or a resumed run restores exactly that:
// the weights of the stable targets, the targets an operator had drained (weight 0, never touched),
// the upstream's balancing settings, and in bluegreen mode the Service's host and what the green
// upstream held. Only entities canaryctl created are ever deleted.
type Original struct {
	Mode       Mode   `json:"mode"`
	Upstream   string `json:"upstream,omitempty"`
	UpstreamID string `json:"upstreamId,omitempty"`
	// Targets: every target of the upstream that this rollout did not create, with its weight
	// (0: drained by an operator).
	Targets []OriginalTarget `json:"targets,omitempty"`
	// Balancing: the upstream's algorithm and hash settings (the fields hash mode changes).
	Balancing map[string]any `json:"balancing,omitempty"`
	// Service: the Service's host, port and path (bluegreen and canary-plugin switch them).
	ServiceHost string `json:"serviceHost,omitempty"`
	ServicePort int    `json:"servicePort,omitempty"`
	ServicePath string `json:"servicePath,omitempty"`
	// Partial: the upstream already held targets of this rollout when it was recorded (a resume
	// without a recorded original): weights may be mid-rollout ones.
	Partial bool `json:"partial,omitempty"`
}

// OriginalTarget is one target as it was.
type OriginalTarget struct {
	Target string   `json:"target"`
	Weight int      `json:"weight"`
	Tags   []string `json:"tags,omitempty"` // a rollback that creates it again gives them back
}

// hashFields are the upstream fields hash mode changes and restores.
var hashFields = []string{"algorithm", "hash_on", "hash_on_header", "hash_on_cookie"}

// Original returns the gateway's state as preflight found it, for the rollout's state file. It is
// an error when preflight found targets of this rollout already there: the gateway is no longer
// original and only a recorded Original (SetOriginal) can tell what it was.
func (r *Router) Original(ctx context.Context) (json.RawMessage, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.resolveLocked(ctx); err != nil {
		return nil, err
	}
	if r.orig.Partial {
		return nil, errors.New("kong: record the original upstream: it already holds targets of this rollout (an earlier run's); resume that rollout with run --resume, or roll it back with canaryctl abort")
	}
	b, err := json.Marshal(r.orig)
	if err != nil {
		return nil, fmt.Errorf("kong: encode the original state: %w", err)
	}
	return b, nil
}

// SetOriginal replaces what preflight found with the Original recorded when the rollout started
// (a resumed run, an abort): stable's weights, drained targets and balancing come from it.
func (r *Router) SetOriginal(raw json.RawMessage) error {
	var o Original
	if err := json.Unmarshal(raw, &o); err != nil {
		return fmt.Errorf("kong: read the recorded original state: %w", err)
	}
	if o.Mode != r.cfg.Mode {
		return fmt.Errorf("kong: the rollout was started in mode %s, the spec says %s; resume with the spec it started with", o.Mode, r.cfg.Mode)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.orig, r.recorded = o, true
	if !r.resolved {
		return nil // the first call to Kong resolves, then applies it
	}
	if err := r.checkSameUpstream(); err != nil {
		return err
	}
	r.applyOriginalLocked()
	if r.cfg.Log != nil && r.cfg.Mode != ModeCanaryPlugin {
		addrs := make([]string, len(r.st.stable))
		for i, s := range r.st.stable {
			addrs[i] = s.addr
		}
		if err := r.cfg.Log.SetCohort(providers.Stable, addrs); err != nil {
			return fmt.Errorf("kong: register stable targets with the kong-log receiver: %w", err)
		}
	}
	return nil
}

// checkSameUpstream refuses a recorded original whose upstream Kong no longer has under that id.
func (r *Router) checkSameUpstream() error {
	o := r.orig
	if r.cfg.Mode != ModeBlueGreen && o.UpstreamID != "" && r.st.upstreamID != "" && o.UpstreamID != r.st.upstreamID {
		return fmt.Errorf("kong: upstream %q has id %s now, %s when the rollout started: %w (it was deleted and created again, or Kong lost its database); check the upstream's targets by hand",
			o.Upstream, r.st.upstreamID, o.UpstreamID, ErrGatewayChanged)
	}
	return nil
}

// applyOriginalLocked derives the stable cohort and the balancing to restore from r.orig.
func (r *Router) applyOriginalLocked() {
	st := &r.st
	st.stable = nil
	for _, t := range r.orig.Targets {
		if t.Weight > 0 {
			st.stable = append(st.stable, stableTarget{addr: t.Target, weight: t.Weight})
		}
	}
	st.hashOrig = r.orig.Balancing
	if r.orig.ServiceHost != "" {
		st.serviceHost, st.servicePort, st.servicePath = r.orig.ServiceHost, r.orig.ServicePort, r.orig.ServicePath
	}
}

// drained reports whether addr was a target with weight 0 before the rollout.
func (r *Router) drained(addr string) bool {
	return slices.ContainsFunc(r.orig.Targets, func(t OriginalTarget) bool { return t.Target == addr && t.Weight == 0 })
}

// original reports whether addr was a target (of any weight) before the rollout.
func (r *Router) original(addr string) bool {
	return slices.ContainsFunc(r.orig.Targets, func(t OriginalTarget) bool { return t.Target == addr })
}

func originalTargets(ts []target, ours func(target) bool) []OriginalTarget {
	var out []OriginalTarget
	for _, t := range ts {
		if !ours(t) {
			out = append(out, OriginalTarget{Target: t.Addr, Weight: t.Weight, Tags: t.Tags})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out
}

func describeTargets(ts []OriginalTarget) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = fmt.Sprintf("%s=%d", t.Target, t.Weight)
	}
	return strings.Join(s, ", ")
}
