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
	ModeBlueGreen: {validate: validateBlueGreen, needsService: true, router: func(r *Router) router { return blueGreen{r} },
		caps: func(*Spec) providers.GatewayCaps { return providers.GatewayCaps{BeforeAfterOnly: true} }},
	ModeCanaryPlugin: {validate: validateCanaryPlugin, needsService: true, stableByRollout: true,
		router: func(r *Router) router { return canaryPlugin{r} },
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

// targets: upstream targets with weights (modes targets, hash and dbless).
type targets struct{ r *Router }

func newTargets(r *Router) router { return targets{r} }

func (m targets) setUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error {
	return m.r.tSetUpstreams(ctx, c, addrs)
}

func (m targets) setSplit(ctx context.Context, s providers.Split) error {
	if err := m.r.tSetSplit(ctx, s); err != nil {
		return err
	}
	return m.r.settle(ctx, m.r.st.upstreamID, "set split "+s.String(), true)
}

func (m targets) split(ctx context.Context) (providers.Split, error) { return m.r.tSplit(ctx) }
func (m targets) rollback(ctx context.Context) error                 { return m.r.tRollback(ctx) }
func (m targets) promote(ctx context.Context) error                  { return m.r.tPromote(ctx) }

// blueGreen: the Service's host switches between two upstreams (modes.go).
type blueGreen struct{ r *Router }

func (m blueGreen) setUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error {
	return m.r.bgSetUpstreams(ctx, c, addrs)
}

func (m blueGreen) setSplit(ctx context.Context, s providers.Split) error {
	if err := m.r.bgSetSplit(ctx, s); err != nil {
		return err
	}
	return m.r.wait(ctx, "set split "+s.String())
}

func (m blueGreen) split(ctx context.Context) (providers.Split, error) { return m.r.bgSplit(ctx) }
func (m blueGreen) rollback(ctx context.Context) error                 { return m.r.bgRollback(ctx) }
func (m blueGreen) promote(ctx context.Context) error                  { return m.r.bgPromote(ctx) }

// canaryPlugin: Kong Enterprise's canary plugin (modes.go).
type canaryPlugin struct{ r *Router }

func (m canaryPlugin) setUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error {
	return m.r.cpSetUpstreams(ctx, c, addrs)
}

func (m canaryPlugin) setSplit(ctx context.Context, s providers.Split) error {
	if err := m.r.cpSetSplit(ctx, s); err != nil {
		return err
	}
	return m.r.wait(ctx, "set split "+s.String())
}

func (m canaryPlugin) split(ctx context.Context) (providers.Split, error) { return m.r.cpSplit(ctx) }
func (m canaryPlugin) rollback(ctx context.Context) error                 { return m.r.cpRollback(ctx) }
func (m canaryPlugin) promote(ctx context.Context) error                  { return m.r.cpPromote(ctx) }
