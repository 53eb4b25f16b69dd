package kong

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	gokong "github.com/kong/go-kong/kong"

	"github.com/canaryctl/canaryctl/providers"
)

// ---- blue/green: the Service's host switches between two upstreams ----

func (r *Router) bgSetUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error {
	st := &r.st
	switch c {
	case providers.Stable:
		return nil // blue: whatever the service points at now
	case providers.Baseline:
		return fmt.Errorf("kong: mode bluegreen switches all traffic at once and has no baseline cohort; compare the canary with stable (analysis.control: stable, the default for this mode) or use mode targets: %w", ErrUnsupported)
	}
	if len(addrs) == 0 {
		return errors.New("kong: set canary upstreams: no address given")
	}
	if st.greenID == "" {
		up, err := r.client.Upstreams.Get(ctx, ptr(r.cfg.GreenUpstream))
		switch {
		case err == nil:
			st.greenID = deref(up.ID)
			// created by this rollout (an earlier run of it): tagged so
			st.greenCreated = slices.ContainsFunc(up.Tags, func(t *string) bool { return t != nil && *t == r.rolloutTag() })
		case errors.Is(err, providers.ErrNotFound):
			tags := []*string{ptr(TagCanaryctl), ptr(r.rolloutTag())}
			up, err = r.client.Upstreams.Create(ctx, &gokong.Upstream{Name: ptr(r.cfg.GreenUpstream), Tags: tags})
			if err != nil {
				return fmt.Errorf("kong: create green upstream %q: %w", r.cfg.GreenUpstream, err)
			}
			st.greenID, st.greenCreated = deref(up.ID), true
		default:
			return fmt.Errorf("kong: find green upstream %q: %w", r.cfg.GreenUpstream, err)
		}
	}
	if st.serviceHost == r.cfg.GreenUpstream {
		return fmt.Errorf("kong: service %q already points at the green upstream %q; set gateway.kong.greenUpstream to an upstream the service does not use", r.cfg.Service, r.cfg.GreenUpstream)
	}
	ts, err := r.listTargets(ctx, st.greenID)
	if err != nil {
		return fmt.Errorf("kong: list targets of green upstream %q: %w", r.cfg.GreenUpstream, err)
	}
	var others []string
	for _, t := range ts {
		if _, own := r.cohortOf(t); !own && t.Weight > 0 {
			others = append(others, fmt.Sprintf("%s (weight %d)", t.Addr, t.Weight))
		}
	}
	if len(others) > 0 {
		// The switch sends all traffic to the green upstream: these would get their share of it
		// next to the canary (and they are not canaryctl's to delete).
		return fmt.Errorf("kong: green upstream %q already has targets this rollout did not create: %s; the switch would send them part of the traffic: remove them (or set their weight to 0), or set gateway.kong.greenUpstream to an empty upstream",
			r.cfg.GreenUpstream, strings.Join(others, ", "))
	}
	saved := st.upstreamID
	st.upstreamID = st.greenID
	defer func() { st.upstreamID = saved }()
	var changes []change
	for _, a := range addrs {
		i := slices.IndexFunc(ts, func(t target) bool { return t.Addr == a })
		if i < 0 {
			changes = append(changes, change{op: opCreate, addr: a, weight: 100, tags: r.tags(providers.Canary)})
		} else if ts[i].Weight == 0 {
			changes = append(changes, change{op: opPatch, addr: a, id: ts[i].ID, weight: 100})
		}
	}
	for _, t := range ts {
		if !slices.Contains(addrs, t.Addr) && t.Weight > 0 {
			if _, own := r.cohortOf(t); own {
				changes = append(changes, change{op: opDelete, addr: t.Addr, id: t.ID})
			}
		}
	}
	if err := r.apply(ctx, changes); err != nil {
		return fmt.Errorf("kong: add canary targets to green upstream %q: %w", r.cfg.GreenUpstream, err)
	}
	st.cohorts[providers.Canary] = addrs
	// the switch must find green's balancer built with the canary in it
	return r.settle(ctx, st.greenID, "adding the canary to green upstream "+r.cfg.GreenUpstream, true)
}

func (r *Router) setServiceHost(ctx context.Context, host string, port int, path *string) error {
	body := map[string]any{"host": host}
	if port > 0 {
		body["port"] = port
	}
	if path != nil {
		body["path"] = *path
	}
	if err := r.call(ctx, http.MethodPatch, "/services/"+r.st.serviceID, nil, body, nil); err != nil {
		return fmt.Errorf("kong: point service %q at %s: %w", r.cfg.Service, host, err)
	}
	svc, err := r.client.Services.Get(ctx, ptr(r.st.serviceID))
	if err != nil {
		return fmt.Errorf("kong: read back service %q: %w", r.cfg.Service, err)
	}
	if deref(svc.Host) != host {
		return fmt.Errorf("kong: read back service %q: host is %q, want %q", r.cfg.Service, deref(svc.Host), host)
	}
	return nil
}

func (r *Router) bgSetSplit(ctx context.Context, s providers.Split) error {
	switch {
	case s.Baseline != 0:
		return fmt.Errorf("kong: set split %s: mode bluegreen has no baseline: %w", s, providers.ErrInvalidSplit)
	case s.Canary == 0:
		return r.setServiceHost(ctx, r.st.serviceHost, 0, nil)
	case s.Canary == providers.BasisPoints:
		if len(r.st.cohorts[providers.Canary]) == 0 {
			return fmt.Errorf("kong: set split %s: the green upstream has no canary targets yet", s)
		}
		return r.setServiceHost(ctx, r.cfg.GreenUpstream, 0, nil)
	}
	return fmt.Errorf("kong: set split %s: mode bluegreen sends 0%% or 100%% to the canary; use steps [100] or mode targets for gradual steps: %w", s, providers.ErrInvalidSplit)
}

func (r *Router) bgSplit(ctx context.Context) (providers.Split, error) {
	svc, err := r.client.Services.Get(ctx, ptr(r.st.serviceID))
	if err != nil {
		return providers.Split{}, fmt.Errorf("kong: read service %q: %w", r.cfg.Service, err)
	}
	if deref(svc.Host) == r.cfg.GreenUpstream {
		return providers.Split{Canary: providers.BasisPoints}, nil
	}
	return providers.Split{}, nil
}

func (r *Router) bgRollback(ctx context.Context) error {
	if err := r.setServiceHost(ctx, r.st.serviceHost, 0, nil); err != nil {
		return err
	}
	if err := r.findGreen(ctx); err != nil {
		return err
	}
	if r.st.greenID == "" {
		return nil
	}
	// Kong's nodes route by the old host until they rebuild their router: the green upstream must
	// outlive that, or requests still sent to it find no upstream.
	if err := r.wait(ctx, "switching the service back to the blue upstream"); err != nil {
		return err
	}
	if r.st.greenCreated {
		if err := r.client.Upstreams.Delete(ctx, ptr(r.st.greenID)); err != nil && !errors.Is(err, providers.ErrNotFound) {
			return fmt.Errorf("kong: roll back: delete green upstream %q: %w", r.cfg.GreenUpstream, err)
		}
	} else {
		ts, err := r.listTargets(ctx, r.st.greenID)
		if err != nil {
			return fmt.Errorf("kong: roll back: list targets of green upstream %q: %w", r.cfg.GreenUpstream, err)
		}
		saved := r.st.upstreamID
		r.st.upstreamID = r.st.greenID
		var del []change
		for _, t := range ts {
			if _, own := r.cohortOf(t); own || r.promotedCanary(t) {
				del = append(del, change{op: opDelete, addr: t.Addr, id: t.ID})
			}
		}
		err = r.apply(ctx, del)
		r.st.upstreamID = saved
		if err != nil {
			return fmt.Errorf("kong: roll back: delete canary targets of green upstream %q: %w", r.cfg.GreenUpstream, err)
		}
	}
	r.st.greenID, r.st.greenCreated = "", false
	r.st.cohorts = map[providers.Cohort][]string{}
	return nil
}

func (r *Router) bgPromote(ctx context.Context) error {
	if len(r.st.cohorts[providers.Canary]) == 0 {
		return fmt.Errorf("kong: promote: the green upstream %q has no canary targets", r.cfg.GreenUpstream)
	}
	if err := r.setServiceHost(ctx, r.cfg.GreenUpstream, 0, nil); err != nil {
		return err
	}
	if err := r.wait(ctx, "switching the service to the green upstream"); err != nil {
		return err
	}
	// Green is the service's upstream now: its targets (and the upstream, if this rollout created
	// it) lose the rollout's tags, so that they are ordinary entities a later rollout works with.
	ts, err := r.listTargets(ctx, r.st.greenID)
	if err != nil {
		return fmt.Errorf("kong: promote: list targets of green upstream %q: %w", r.cfg.GreenUpstream, err)
	}
	var untag []change
	for _, t := range ts {
		if _, own := r.cohortOf(t); own {
			untag = append(untag, change{op: opPatch, addr: t.Addr, id: t.ID, weight: t.Weight, tags: []string{}})
		}
	}
	saved := r.st.upstreamID
	r.st.upstreamID = r.st.greenID
	err = r.apply(ctx, untag)
	r.st.upstreamID = saved
	if err != nil {
		return fmt.Errorf("kong: promote: untag the canary's targets in green upstream %q: %w", r.cfg.GreenUpstream, err)
	}
	if r.st.greenCreated {
		if err := r.call(ctx, http.MethodPatch, "/upstreams/"+r.st.greenID, nil, map[string]any{"tags": []string{}}, nil); err != nil {
			return fmt.Errorf("kong: promote: untag green upstream %q: %w", r.cfg.GreenUpstream, err)
		}
	}
	r.st.cohorts = map[providers.Cohort][]string{}
	return nil
}

// ---- Enterprise canary plugin ----

func (r *Router) cpSetUpstreams(_ context.Context, c providers.Cohort, addrs []string) error {
	switch c {
	case providers.Stable:
		// Kong sends stable's share to the Service's host: nothing to register (SetUpstreams gives
		// the addresses to the kong-log receiver, which attributes requests to them as stable).
		return nil
	case providers.Baseline:
		return fmt.Errorf("kong: mode canary-plugin sends traffic to the service or to one canary host and has no baseline cohort; compare the canary with stable (analysis.control: stable, the default for this mode) or use mode targets: %w", ErrUnsupported)
	}
	if len(addrs) != 1 {
		return fmt.Errorf("kong: mode canary-plugin sends the canary share to one upstream_host:upstream_port, got %d addresses; put the canary instances behind one address (e.g. a Kong upstream or a load balancer)", len(addrs))
	}
	host, port, _ := net.SplitHostPort(addrs[0])
	r.st.canaryHost = host
	r.st.canaryPort, _ = strconv.Atoi(port)
	r.st.cohorts[providers.Canary] = addrs
	return nil
}

type pluginAnswer struct {
	ID     string         `json:"id"`
	Name   string         `json:"name"`
	Config map[string]any `json:"config"`
	Tags   []string       `json:"tags"`
}

// findPlugin returns the plugin named name that this rollout added to the service. The tags are
// checked here: Kong ignores `?tags=` on a nested collection like /services/{id}/plugins
// (Kong/kong#6779), so the list holds every plugin of the service, the user's own included.
func (r *Router) findPlugin(ctx context.Context, name string) (*pluginAnswer, error) {
	q := struct {
		Size   int    `url:"size"`
		Offset string `url:"offset,omitempty"`
	}{Size: 1000}
	for {
		var page struct {
			Data   []pluginAnswer `json:"data"`
			Offset string         `json:"offset"`
		}
		if err := r.call(ctx, http.MethodGet, "/services/"+r.st.serviceID+"/plugins", q, nil, &page); err != nil {
			return nil, err
		}
		for i := range page.Data {
			p := &page.Data[i]
			if p.Name == name && slices.Contains(p.Tags, TagCanaryctl) && slices.Contains(p.Tags, r.rolloutTag()) {
				return p, nil
			}
		}
		if page.Offset == "" {
			return nil, nil
		}
		q.Offset = page.Offset
	}
}

func (r *Router) cpSetSplit(ctx context.Context, s providers.Split) error {
	if s.Baseline != 0 {
		return fmt.Errorf("kong: set split %s: mode canary-plugin has no baseline: %w", s, providers.ErrInvalidSplit)
	}
	pct := float64(s.Canary) / 100
	if r.st.pluginID == "" {
		p, err := r.findPlugin(ctx, "canary")
		if err != nil {
			return fmt.Errorf("kong: find the canary plugin of service %q: %w", r.cfg.Service, err)
		}
		if p != nil {
			r.st.pluginID = p.ID
		}
	}
	if r.st.pluginID == "" && s.Canary == 0 {
		return nil
	}
	if r.st.pluginID == "" {
		if r.st.canaryHost == "" {
			return fmt.Errorf("kong: set split %s: the canary has no address yet (SetUpstreams canary first)", s)
		}
		hash := r.cfg.CanaryHash
		if hash == "" {
			hash = "none"
		}
		cfg := map[string]any{"percentage": pct, "upstream_host": r.st.canaryHost, "upstream_port": r.st.canaryPort, "hash": hash}
		if r.cfg.CanaryHashHeader != "" {
			cfg["hash_header"] = r.cfg.CanaryHashHeader
		}
		if r.cfg.CanaryUpstreamURI != "" {
			cfg["upstream_uri"] = r.cfg.CanaryUpstreamURI
		}
		body := map[string]any{"name": "canary", "config": cfg, "tags": []string{TagCanaryctl, "cohort:canary", r.rolloutTag()}}
		var p pluginAnswer
		if err := r.call(ctx, http.MethodPost, "/services/"+r.st.serviceID+"/plugins", nil, body, &p); err != nil {
			return fmt.Errorf("kong: add the canary plugin to service %q: %w", r.cfg.Service, err)
		}
		r.st.pluginID = p.ID
	} else {
		body := map[string]any{"config": map[string]any{"percentage": pct}}
		if err := r.call(ctx, http.MethodPatch, "/plugins/"+r.st.pluginID, nil, body, nil); err != nil {
			return fmt.Errorf("kong: set the canary plugin's percentage to %v: %w", pct, err)
		}
	}
	got, err := r.cpSplit(ctx)
	if err != nil {
		return err
	}
	if got.Canary != s.Canary {
		return fmt.Errorf("kong: read back the canary plugin: percentage is %s, want %s", providers.Percent(got.Canary), providers.Percent(s.Canary))
	}
	return nil
}

func (r *Router) cpSplit(ctx context.Context) (providers.Split, error) {
	if r.st.pluginID == "" {
		return providers.Split{}, nil
	}
	var p pluginAnswer
	if err := r.call(ctx, http.MethodGet, "/plugins/"+r.st.pluginID, nil, nil, &p); err != nil {
		if errors.Is(err, providers.ErrNotFound) {
			return providers.Split{}, nil
		}
		return providers.Split{}, fmt.Errorf("kong: read the canary plugin: %w", err)
	}
	pct, _ := p.Config["percentage"].(float64)
	bp, err := providers.PercentToBP(pct)
	if err != nil {
		return providers.Split{}, fmt.Errorf("kong: canary plugin percentage: %w", err)
	}
	return providers.Split{Canary: bp}, nil
}

func (r *Router) cpRollback(ctx context.Context) error {
	if r.st.pluginID == "" {
		p, err := r.findPlugin(ctx, "canary")
		if err != nil {
			return fmt.Errorf("kong: roll back: find the canary plugin of service %q: %w", r.cfg.Service, err)
		}
		if p == nil {
			return nil
		}
		r.st.pluginID = p.ID
	}
	if err := r.call(ctx, http.MethodDelete, "/plugins/"+r.st.pluginID, nil, nil, nil); err != nil && !errors.Is(err, providers.ErrNotFound) {
		return fmt.Errorf("kong: roll back: delete the canary plugin: %w", err)
	}
	r.st.pluginID = ""
	return nil
}

// cpPromote finishes as Kong documents for the canary plugin: point the Service at the canary's
// host and port (and upstream_uri), then delete the plugin.
func (r *Router) cpPromote(ctx context.Context) error {
	if r.st.canaryHost == "" {
		return errors.New("kong: promote: the canary has no address")
	}
	var path *string
	if r.cfg.CanaryUpstreamURI != "" {
		path = &r.cfg.CanaryUpstreamURI
	}
	if err := r.setServiceHost(ctx, r.st.canaryHost, r.st.canaryPort, path); err != nil {
		return err
	}
	if err := r.cpRollback(ctx); err != nil {
		return fmt.Errorf("kong: promote: %w", err)
	}
	return r.wait(ctx, "pointing the service at the canary")
}

// ---- http-log plugin for the kong-log source ----

func (r *Router) enableLogLocked(ctx context.Context) error {
	if r.st.logPluginID != "" {
		return nil
	}
	if p, err := r.findPlugin(ctx, "http-log"); err != nil {
		return fmt.Errorf("kong: find the http-log plugin of service %q: %w", r.cfg.Service, err)
	} else if p != nil {
		// left by an earlier run of this rollout: give it this run's endpoint and secret
		if err := r.updateLogPlugin(ctx, p.ID); err != nil {
			return err
		}
		r.st.logPluginID = p.ID
		return nil
	}
	// the rollout's secret: the receiver reads nothing else
	config := map[string]any{"http_endpoint": r.cfg.LogEndpoint, "headers": r.logHeaders(false)}
	// batches of up to 100 entries, at most LogFlush apart (array bodies), as the version has it
	for k, v := range r.logBatching(r.cfg.LogFlush) {
		config[k] = v
	}
	body := map[string]any{
		"name":   "http-log",
		"config": config,
		"tags":   []string{TagCanaryctl, r.rolloutTag()},
	}
	var p pluginAnswer
	if err := r.postLogPlugin(ctx, body, &p); err != nil {
		if isStatus(err, http.StatusConflict) {
			return fmt.Errorf("kong: add http-log plugin to service %q: the service already has an http-log plugin; point it at %s yourself and set gateway.kong.log.manual: true: %w", r.cfg.Service, r.cfg.LogEndpoint, err)
		}
		return fmt.Errorf("kong: add http-log plugin to service %q: %w", r.cfg.Service, err)
	}
	r.st.logPluginID = p.ID
	r.log.Info("kong http-log plugin added", "service", r.cfg.Service, "endpoint", r.cfg.LogEndpoint)
	return nil
}

func (r *Router) disableLogLocked(ctx context.Context) error {
	if r.st.logPluginID == "" && r.cfg.LogEndpoint != "" && r.st.serviceID != "" {
		// another process (a killed run) may have added it: found by this rollout's tags
		p, err := r.findPlugin(ctx, "http-log")
		if err != nil {
			return fmt.Errorf("kong: find the http-log plugin canaryctl added: %w", err)
		}
		if p != nil {
			r.st.logPluginID = p.ID
		}
	}
	if r.st.logPluginID == "" {
		return nil
	}
	if err := r.call(ctx, http.MethodDelete, "/plugins/"+r.st.logPluginID, nil, nil, nil); err != nil && !errors.Is(err, providers.ErrNotFound) {
		return fmt.Errorf("kong: remove the http-log plugin canaryctl added: %w", err)
	}
	r.st.logPluginID = ""
	return nil
}
