package kong

import (
	"context"
	"fmt"

	"github.com/canaryctl/canaryctl/providers"
)

// router is how one mode carries out the Router's gateway operations. The Router calls it under
// r.mu with the gateway resolved, and never asks which mode runs.
type router interface {
	setUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error
	// setSplit sets the shares and returns once Kong routes by them (or the propagation wait ends).
	setSplit(ctx context.Context, s providers.Split) error
	split(ctx context.Context) (providers.Split, error)
	rollback(ctx context.Context) error
	promote(ctx context.Context) error
}

// modeType is what the package knows of a mode before a Router exists: its settings' problems,
// what it routes (the capabilities the rollout engine asks about) and its router. A new mode adds
// its constant to Modes and its modeType here.
type modeType struct {
	// validate reports problems of the mode's own settings.
	validate func(cfg Config, bad badFunc)
	// needsService: the mode changes the Kong Service itself, so gateway.kong.service is required.
	needsService bool
	// stableByRollout: stable's targets are the ones the rollout names, not learnt from an
	// upstream (the kong-log receiver is told them too).
	stableByRollout bool
	// declarative: Kong runs without a database (DB-less): no plugin can be added through the
	// Admin API.
	declarative bool
	caps        func(s *Spec) providers.GatewayCaps
	router      func(r *Router) router
}

type badFunc func(field, format string, args ...any)

var modeTypes = map[Mode]modeType{
	ModeTargets: {caps: fullCaps, router: newTargets},
	ModeDBLess:  {caps: fullCaps, router: newTargets, declarative: true},
	ModeHash: {validate: validateHash, router: newTargets, caps: func(s *Spec) providers.GatewayCaps {
		c := providers.FullCaps
		c.Sticky = fmt.Sprintf("gateway.kong.mode hash (hashOn %s)", s.HashOn)
		return c
	}},
	ModeBlueGreen: {validate: validateBlueGreen, needsService: true, router: newBlueGreen,
		caps: func(*Spec) providers.GatewayCaps { return providers.GatewayCaps{BeforeAfterOnly: true} }},
	ModeCanaryPlugin: {validate: validateCanaryPlugin, needsService: true, stableByRollout: true,
		router: newCanaryPlugin,
		caps: func(s *Spec) providers.GatewayCaps {
			c := providers.GatewayCaps{AtOnce: true}
			if s.CanaryHash != "" && s.CanaryHash != "none" {
				c.Sticky = fmt.Sprintf("gateway.kong.canaryHash %s", s.CanaryHash)
			}
			return c
		}},
}

func fullCaps(*Spec) providers.GatewayCaps { return providers.FullCaps }

func validateHash(cfg Config, bad badFunc) {
	switch cfg.HashOn {
	case "consumer", "ip":
	case "header":
		if cfg.HashOnHeader == "" {
			bad("hashOnHeader", "required when hashOn is header; e.g. X-User-ID")
		}
	case "cookie":
		if cfg.HashOnCookie == "" {
			bad("hashOnCookie", "required when hashOn is cookie; e.g. canary-cohort")
		}
	default:
		bad("hashOn", "%q: use consumer, ip, header or cookie", cfg.HashOn)
	}
}

func validateBlueGreen(cfg Config, bad badFunc) {
	if cfg.GreenUpstream == "" {
		bad("greenUpstream", "required for mode bluegreen: the upstream that receives the canary's targets")
	}
}

func validateCanaryPlugin(cfg Config, bad badFunc) {
	switch cfg.CanaryHash {
	case "", "none", "consumer", "ip":
	case "header":
		if cfg.CanaryHashHeader == "" {
			bad("canaryHashHeader", "required when canaryHash is header")
		}
	default:
		bad("canaryHash", "%q: use none, consumer, ip or header", cfg.CanaryHash)
	}
}

// funcs is a router made of the Router's methods of one mode (targets.go, modes.go).
type funcs struct {
	up              func(context.Context, providers.Cohort, []string) error
	set             func(context.Context, providers.Split) error
	get             func(context.Context) (providers.Split, error)
	back, promoteTo func(context.Context) error
}

func (f funcs) setUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error {
	return f.up(ctx, c, addrs)
}
func (f funcs) setSplit(ctx context.Context, s providers.Split) error { return f.set(ctx, s) }
func (f funcs) split(ctx context.Context) (providers.Split, error)    { return f.get(ctx) }
func (f funcs) rollback(ctx context.Context) error                    { return f.back(ctx) }
func (f funcs) promote(ctx context.Context) error                     { return f.promoteTo(ctx) }

// newTargets: upstream targets with weights (modes targets, hash and dbless); a split has
// propagated when the Admin node's balancer routes by it (settle).
func newTargets(r *Router) router {
	set := func(ctx context.Context, s providers.Split) error {
		if err := r.tSetSplit(ctx, s); err != nil {
			return err
		}
		return r.settle(ctx, r.st.upstreamID, "set split "+s.String(), true)
	}
	return funcs{r.tSetUpstreams, set, r.tSplit, r.tRollback, r.tPromote}
}

// newBlueGreen: the Service's host switches between two upstreams (modes.go).
func newBlueGreen(r *Router) router {
	return funcs{r.bgSetUpstreams, r.thenWait(r.bgSetSplit), r.bgSplit, r.bgRollback, r.bgPromote}
}

// newCanaryPlugin: Kong Enterprise's canary plugin (modes.go).
func newCanaryPlugin(r *Router) router {
	return funcs{r.cpSetUpstreams, r.thenWait(r.cpSetSplit), r.cpSplit, r.cpRollback, r.cpPromote}
}

// thenWait waits for Kong to propagate a split set by set.
func (r *Router) thenWait(set func(context.Context, providers.Split) error) func(context.Context, providers.Split) error {
	return func(ctx context.Context, s providers.Split) error {
		if err := set(ctx, s); err != nil {
			return err
		}
		return r.wait(ctx, "set split "+s.String())
	}
}
