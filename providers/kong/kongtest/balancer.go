package kongtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The node's balancers. Kong proxies with a per-worker balancer per upstream that is rebuilt from
// the database when its targets change, not at the moment of the Admin API write: a worker picks
// the change up every worker_state_update_frequency (kong/runloop/balancer/upstreams.lua,
// update_balancer_state_timer; default 5 s), and GET /upstreams/{u}/health reports what that
// balancer holds (kong/api/routes/upstreams.lua, kong/db/dao/targets.lua
// page_for_upstream_with_health, kong/runloop/balancer/healthcheckers.lua get_upstream_health and
// balancers.lua getTargetStatus/getStatus; Kong 3.0 to 3.10).
//
// By default the stand-in rebuilds at once. WithBalancerDelay(d) rebuilds d after a change (the
// state of the database at that moment, as Kong's timer does); FreezeBalancer holds the balancers
// until ThawBalancer, so a test can see what a caller does while the node still routes by the old
// targets. The data plane routes by the balancers, never by the database.

// WithBalancerDelay makes the balancers follow target changes d later (Kong's
// worker_state_update_frequency).
func WithBalancerDelay(d time.Duration) Option { return func(s *Server) { s.balancerDelay = d } }

// WithVersion sets the version Kong reports on GET / and in the Server header (default 3.9.0); the
// http-log plugin schema follows it (see pluginSchema).
func WithVersion(v string) Option { return func(s *Server) { s.version = v } }

// WithControlPlane runs the Admin API as a hybrid-mode control plane (role = control_plane): it
// proxies nothing and has no balancers, so GET /upstreams/{u}/health?balancer_health=1 has no data
// (healthcheckers.get_balancer_health: "balancer not found").
func WithControlPlane() Option { return func(s *Server) { s.controlPlane = true } }

// FreezeBalancer stops the balancers from following target changes until ThawBalancer.
func (s *Server) FreezeBalancer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frozen = true
}

// ThawBalancer rebuilds the balancers from the database now and lets them follow changes again.
func (s *Server) ThawBalancer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frozen = false
	s.rebuildLocked()
}

// SyncBalancer rebuilds the balancers and the router from the database now (the end of a worker's
// timer periods).
func (s *Server) SyncBalancer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rebuildLocked()
	s.rebuildRouterLocked()
}

// BalancerWeights returns what the balancer of an upstream (name or id, default workspace) holds:
// target address -> weight; nil if it has no balancer.
func (s *Server) BalancerWeights(upstream string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.ws["default"].find("upstreams", upstream)
	if u == nil {
		return nil
	}
	b, ok := s.balancers[u["id"].(string)]
	if !ok {
		return nil
	}
	out := map[string]int{}
	for _, t := range b {
		out[t["target"].(string)] = int(t["weight"].(int64))
	}
	return out
}

// ResetDatabase empties the default workspace, as a Kong node restarted without its database
// (DB-less without a declarative config, or a new database) comes back: every id an Admin API
// client remembered now answers 404, even if entities of the same names are created again.
func (s *Server) ResetDatabase() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ws["default"] = newStore()
	for id, q := range s.queues {
		delete(s.queues, id)
		go q.stop()
	}
	s.markDirtyLocked()
	s.markRouterDirtyLocked()
}

// markDirtyLocked schedules a rebuild of the balancers after a change of upstreams or targets.
func (s *Server) markDirtyLocked() {
	if s.frozen || s.controlPlane {
		return
	}
	if s.balancerDelay <= 0 {
		s.rebuildLocked()
		return
	}
	if s.balTimer != nil {
		return // the pending rebuild reads the database as it is then
	}
	s.balTimer = time.AfterFunc(s.balancerDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.balTimer = nil
		if !s.frozen && !s.closed {
			s.rebuildLocked()
		}
	})
}

// rebuildLocked copies every upstream's targets of the default workspace into its balancer.
func (s *Server) rebuildLocked() {
	if s.controlPlane {
		return
	}
	st := s.ws["default"]
	next := map[string][]map[string]any{}
	for _, u := range st.list["upstreams"] {
		id := u["id"].(string)
		var ts []map[string]any
		for _, t := range st.children("targets", "upstream", id) {
			ts = append(ts, map[string]any{"id": t["id"], "target": t["target"], "weight": t["weight"]})
		}
		next[id] = ts
	}
	s.balancers = next
}

// balancerTargetsLocked returns the targets the balancer of upstream id routes to.
func (s *Server) balancerTargetsLocked(id string) []map[string]any { return s.balancers[id] }

// targetStatus renders one balancer target as getTargetStatus does: host, port, dns, nodeWeight,
// weight {total, unavailable, available} and the resolved addresses with health HEALTHCHECKS_OFF
// (no active or passive health checks are configured by the stand-in).
func targetStatus(t map[string]any) map[string]any {
	host, port, _ := net.SplitHostPort(t["target"].(string))
	pn, _ := strconv.Atoi(port)
	w := t["weight"].(int64)
	dns := "A"
	ip := host
	if net.ParseIP(host) == nil {
		dns = "A" // a name is resolved to its A records
		if ips, err := hostsOnly.LookupHost(context.Background(), host); err == nil && len(ips) > 0 {
			ip = ips[0]
		}
	} else if strings.Contains(host, ":") {
		dns = "AAAA"
	}
	return map[string]any{
		"host": host, "port": pn, "dns": dns, "nodeWeight": w,
		"weight":    map[string]any{"total": w, "unavailable": 0, "available": w},
		"addresses": []any{map[string]any{"ip": ip, "port": pn, "weight": w, "health": "HEALTHCHECKS_OFF"}},
	}
}

// health answers GET /upstreams/{u}/health: the upstream's targets (as the targets list has them)
// each with `health` and `data` (what this node's balancer holds for it; a target the balancer
// does not know is "DNS_ERROR" without data), and with ?balancer_health=1 the balancer itself:
// {"health", "balancer_health", "id", "details": {"healthy", "weight", "hosts": [...]}}.
func (s *Server) health(r *http.Request, st *store, up map[string]any) answer {
	if r.Method != http.MethodGet {
		return methodNotAllowed
	}
	id := up["id"].(string)
	bal, built := s.balancers[id]
	if r.URL.Query().Get("balancer_health") == "1" {
		if !built {
			// healthcheckers.get_balancer_health: "balancer not found" is logged, data is null
			return answer{status: 200, body: map[string]any{"data": nil, "next": nil, "node_id": s.nodeID}}
		}
		hosts := []any{}
		var total int64
		for _, t := range bal {
			hosts = append(hosts, targetStatus(t))
			total += t["weight"].(int64)
		}
		bh := "HEALTHY"
		if total == 0 {
			bh = "UNHEALTHY"
		}
		return answer{status: 200, body: map[string]any{"node_id": s.nodeID, "next": nil, "data": map[string]any{
			"health": "HEALTHCHECKS_OFF", "balancer_health": bh, "id": id,
			"details": map[string]any{"healthy": total > 0, "weight": map[string]any{"total": total, "unavailable": 0, "available": total}, "hosts": hosts},
		}}}
	}
	data := []any{}
	for _, t := range st.children("targets", "upstream", id) {
		c := cloneValue(t).(map[string]any)
		if built {
			c["health"] = "DNS_ERROR"
			for _, b := range bal {
				if b["target"] == t["target"] {
					c["health"] = "HEALTHCHECKS_OFF"
					c["data"] = targetStatus(b)
				}
			}
		}
		data = append(data, c)
	}
	return answer{status: 200, body: map[string]any{"data": data, "offset": nil, "next": nil, "node_id": s.nodeID}}
}

// versionAtLeast reports whether the server's version is at least major.minor.
func (s *Server) versionAtLeast(major, minor int) bool {
	parts := strings.SplitN(s.version, ".", 3)
	if len(parts) < 2 {
		return true
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(parts[1])
	return ma > major || ma == major && mi >= minor
}

// pluginSchema returns the config schema of a plugin for the server's version. http-log
// (kong/plugins/http-log/schema.lua): Kong 3.0 to 3.2 batch with queue_size (default 1),
// flush_timeout (default 2) and retry_count (default 10), content_type only application/json, and
// have no `queue` record (sending one is "unknown field"); 3.3 added `queue`
// (kong/tools/queue_schema.lua) and kept the three old fields, deprecated and without defaults.
func (s *Server) pluginSchema(name string) ([]field, bool) {
	if name == "http-log" && !s.versionAtLeast(3, 3) {
		return httpLogLegacy, true
	}
	ps, ok := pluginSchemas[name]
	return ps, ok
}

var httpLogLegacy = []field{
	{name: "http_endpoint", kind: kString, required: true, check: checkURL},
	{name: "method", kind: kString, def: "POST", oneOf: []string{"POST", "PUT", "PATCH"}},
	{name: "content_type", kind: kString, def: "application/json", oneOf: []string{"application/json"}},
	{name: "timeout", kind: kNumber, def: 10000.0},
	{name: "keepalive", kind: kNumber, def: 60000.0},
	{name: "retry_count", kind: kInt, def: int64(10)},
	{name: "queue_size", kind: kInt, def: int64(1)},
	{name: "flush_timeout", kind: kNumber, def: 2.0},
	{name: "headers", kind: kMap},
	{name: "custom_fields_by_lua", kind: kMap},
}

func (s *Server) serverHeader() string { return fmt.Sprintf("kong/%s (kongtest)", s.version) }
