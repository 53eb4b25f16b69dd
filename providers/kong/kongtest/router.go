package kongtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// hostsOnly resolves names from /etc/hosts only ("localhost"): the stand-in's instances listen on
// 127.0.0.1, and a name that is no upstream (a deleted one) must fail at once, not after a DNS
// query that a machine without network answers with a timeout.
var hostsOnly = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("kongtest: no DNS server (names resolve from /etc/hosts only)")
}}

// The node's router. Kong proxies by a per-worker router built from the routes and their services;
// a change of a Service (its host, port or path) reaches the proxy only when that router is
// rebuilt. With worker_consistency = eventual (Kong's default, kong/templates/kong_defaults.lua)
// every worker rebuilds it on a timer of its own, "router-rebuild", every
// worker_state_update_frequency (default 5 s; kong/runloop/handler.lua), independently of the
// timer that applies upstream and target changes to the balancers. The Admin API shows no router:
// nothing tells a client when a node routes by a new host (GET /status has a configuration_hash
// only on DB-less nodes and data planes, kong/api/routes/health.lua).
//
// By default the stand-in rebuilds its router at once. WithRouterDelay(d) rebuilds it d after a
// change of a service or route, from the database as it is then; SyncBalancer rebuilds it too. A
// test that makes the router slower than the balancers sees what a caller does while the node
// still sends a Service to its old host: an upstream deleted meanwhile is a 503 "name resolution
// failed" (kong/runloop/balancer/init.lua: the host is no upstream any more, so it is resolved as
// a DNS name).

// WithRouterDelay makes the router follow changes of services and routes d later (Kong's
// router-rebuild timer, every worker_state_update_frequency).
func WithRouterDelay(d time.Duration) Option { return func(s *Server) { s.routerDelay = d } }

// RoutedHost returns the host the node's router sends a Service (name or id, default workspace)
// to: the Service's host when the router was last rebuilt; "" if the router does not know it.
func (s *Server) RoutedHost(service string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.routerLocked().find("services", service)
	if svc == nil {
		return ""
	}
	h, _ := svc["host"].(string)
	return h
}

// markRouterDirtyLocked schedules a rebuild of the router after a change of services or routes.
func (s *Server) markRouterDirtyLocked() {
	if s.routerDelay <= 0 {
		s.rebuildRouterLocked()
		return
	}
	if s.routerTimer != nil {
		return // the pending rebuild reads the database as it is then
	}
	s.routerTimer = time.AfterFunc(s.routerDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.routerTimer = nil
		if !s.closed {
			s.rebuildRouterLocked()
		}
	})
}

// rebuildRouterLocked copies the routes and services of the default workspace into the router.
func (s *Server) rebuildRouterLocked() {
	st := s.ws["default"]
	r := newStore()
	for _, kind := range []string{"routes", "services"} {
		for _, e := range st.list[kind] {
			r.list[kind] = append(r.list[kind], cloneValue(e).(map[string]any))
		}
	}
	s.router = r
}

// routerLocked is the store the data plane matches routes and services in: the router's copy, which
// may be older than the database (empty until the first rebuild, as a node that just started).
func (s *Server) routerLocked() *store {
	if s.router == nil {
		s.router = newStore()
	}
	return s.router
}

// SetTargetTags replaces the tags of a target (address) of an upstream (name or id, default
// workspace), as an operator's PATCH would, bypassing authentication and DB-less mode: it seeds
// tests.
func (s *Server) SetTargetTags(upstream, target string, tags []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.ws["default"]
	u := st.find("upstreams", upstream)
	if u == nil {
		return fmt.Errorf("kongtest: no upstream %q", upstream)
	}
	for _, t := range st.children("targets", "upstream", u["id"].(string)) {
		if t["target"] == normalizeTarget(target) {
			a := make([]any, len(tags))
			for i, tag := range tags {
				a[i] = tag
			}
			t["tags"] = a
			if s.dbless {
				s.configHash = hashOf(exportConfig(st))
			}
			return nil
		}
	}
	return fmt.Errorf("kongtest: upstream %q has no target %q", upstream, target)
}
