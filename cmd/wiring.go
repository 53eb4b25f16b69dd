package cmd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong"
	"github.com/canaryctl/canaryctl/providers/prometheus"
	"github.com/canaryctl/canaryctl/providers/proxy"
	"github.com/canaryctl/canaryctl/rollout"
)

// openedGateway is what opening a gateway gives a run.
type openedGateway struct {
	gw     rollout.Gateway
	reqLog rollout.RequestLog // nil: the gateway keeps no request log
	owner  providers.Owner    // nil for the embedded proxy: its listener excludes a second run
}

// gatewayOpeners open each gateway type of the providers registry (gateway.type): cmd's half of
// adding a gateway type. TestWiringCoversTheRegistry fails for a registered type without one.
var gatewayOpeners = map[string]func(ctx context.Context, env *Env, p rolloutParts, rt *assembly, log *slog.Logger) (openedGateway, error){
	"builtin": openBuiltin,
	"kong":    openKong,
}

// metricsOpeners open each metrics type of the providers registry (metrics.type).
var metricsOpeners = map[string]func(ctx context.Context, env *Env, spec *rollout.Spec, reqLog rollout.RequestLog, log *slog.Logger) (rollout.Metrics, error){
	"builtin":    requestMetrics,
	"kong-log":   requestMetrics,
	"prometheus": openPrometheus,
}

// opener finds the opener of the type name of field (gateway.type, metrics.type) in openers, or
// says which types this build has.
func opener[T any](openers map[string]T, field, name string, valid []string) (T, error) {
	o, ok := openers[name]
	if !ok {
		return o, usageErrorf("%s %q is not available in this build (valid: %s)", field, name, strings.Join(valid, ", "))
	}
	return o, nil
}

// openBuiltin starts the embedded proxy (gateway.listen) or connects to a `canaryctl proxy`
// (gateway.admin).
func openBuiltin(ctx context.Context, env *Env, p rolloutParts, rt *assembly, log *slog.Logger) (openedGateway, error) {
	spec := p.spec
	if spec.Gateway.Listen != "" {
		px, err := proxy.New(proxy.Config{Upstreams: map[providers.Cohort][]string{providers.Stable: spec.Stable.Addresses}, Logger: log,
			RouteSegments: spec.RouteSegments()})
		if err != nil {
			return openedGateway{}, fmt.Errorf("start embedded proxy: %w", err)
		}
		l, err := net.Listen("tcp", spec.Gateway.Listen)
		if err != nil {
			return openedGateway{}, fmt.Errorf("start embedded proxy: listen on gateway.listen %s: %w", spec.Gateway.Listen, err)
		}
		// The proxy must outlive a cancelled ctx: the rollback after SIGINT goes through it.
		pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() {
			done <- px.Serve(pctx, proxy.ServeConfig{Listener: l, Logger: log, ShutdownTimeout: 5 * time.Second})
		}()
		rt.closers = append(rt.closers, func() { stop(); <-done; px.Close() })
		rt.proxyAddr = l.Addr().String()
		fmt.Fprintf(env.Stderr, "%s: embedded proxy on http://%s (stable %s)\n", spec.Service, l.Addr(), strings.Join(spec.Stable.Addresses, ", "))
		return openedGateway{gw: px, reqLog: px}, nil
	}
	token, err := adminToken(env, spec.Gateway)
	if err != nil {
		return openedGateway{}, err
	}
	cl, err := proxy.NewClient(proxy.ClientConfig{BaseURL: spec.Gateway.Admin, Token: token})
	if err != nil {
		return openedGateway{}, fmt.Errorf("proxy admin client: %w", err)
	}
	// Preflight, before anything is deployed: an admin API that does not answer (or refuses
	// the token) would otherwise show at the first split, and the rollback after it would
	// retry the same dead address for minutes.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = cl.Split(pctx)
	cancel()
	if err != nil {
		return openedGateway{}, fmt.Errorf("gateway.admin %s: the proxy's admin API did not answer a read of the split: %w; start canaryctl proxy with --admin-listen there, or fix gateway.admin (and the token)", spec.Gateway.Admin, err)
	}
	return openedGateway{gw: cl, reqLog: cl, owner: cl}, nil
}

// openKong opens the Kong gateway of gateway.kong, with its http-log receiver for metrics.type
// kong-log.
func openKong(ctx context.Context, env *Env, p rolloutParts, rt *assembly, log *slog.Logger) (openedGateway, error) {
	spec := p.spec
	ks, _ := spec.Gateway.Section().(*kong.Spec) // decoded by the kong type (providers registry)
	oc := kong.OpenConfig{Spec: ks, RolloutID: spec.Service,
		WithLog: spec.Metrics.Type == "kong-log", Getenv: env.Getenv, Logger: log}
	if oc.WithLog {
		var err error
		if oc.LogSecret, oc.LogSecretPath, err = kongLogSecret(p.store, p.fresh); err != nil {
			return openedGateway{}, err
		}
	}
	k, err := kong.Open(ctx, oc)
	if err != nil {
		return openedGateway{}, err
	}
	rt.closers = append(rt.closers, k.Close)
	g := openedGateway{gw: k.Router, owner: k.Router}
	if k.Log != nil {
		g.reqLog = k.Log
	}
	return g, nil
}

// requestMetrics judges the gateway's request log (builtin, kong-log).
func requestMetrics(_ context.Context, _ *Env, spec *rollout.Spec, reqLog rollout.RequestLog, _ *slog.Logger) (rollout.Metrics, error) {
	return rollout.NewRequestMetrics(rollout.RequestMetricsConfig{Log: reqLog, Series: proxy.Series, Control: spec.ControlCohort()})
}

// openPrometheus queries the Prometheus of metrics.prometheus, after a preflight of every query.
func openPrometheus(ctx context.Context, env *Env, spec *rollout.Spec, _ rollout.RequestLog, log *slog.Logger) (rollout.Metrics, error) {
	ps, _ := spec.Metrics.Section().(*prometheus.Spec) // decoded by the prometheus type
	pcfg, err := ps.Config(spec.Service, env.Getenv, log)
	if err != nil {
		return nil, err
	}
	pcfg.Control = spec.ControlCohort() // analysis.control stable: stable's series are the control
	m, err := prometheus.New(pcfg)
	if err != nil {
		return nil, err
	}
	// Before any traffic moves: every query renders, parses and tells baseline from canary.
	if err := m.Preflight(ctx, spec.MetricDefs(), providers.Window{End: time.Now(), Step: spec.Analysis.Resolution}); err != nil {
		return nil, fmt.Errorf("metrics preflight: %w", err)
	}
	return m, nil
}
