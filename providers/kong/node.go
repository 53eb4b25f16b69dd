package kong

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// checkNode reads GET / (go-kong's Root: /kong under a workspace) for the version and the
// database of the Kong node, and refuses a mode the node cannot serve before anything moves: the
// entity modes on a DB-less node (every write would be a 405 "operation unsupported"), mode dbless
// on a node with a database (/config answers 400 there), and Kong before 3.0.
func (r *Router) checkNode(ctx context.Context) error {
	root, err := r.client.Root(ctx)
	if err != nil {
		if isStatus(err, http.StatusForbidden) {
			// an RBAC role that may not read the node's info: go on without the version
			r.log.Warn("kong: cannot read the node's version (GET / answered 403); assuming Kong 3.3 or later", "err", err)
			return nil
		}
		return fmt.Errorf("kong: reach the Admin API at %s (GET /): %w", r.cfg.AdminURL, err)
	}
	v, _ := root["version"].(string)
	r.version = parseVersion(v)
	if r.version[0] != 0 && r.version[0] < 3 {
		return &ConfigError{Field: "admin", Msg: fmt.Sprintf("%s runs Kong %s; canaryctl drives the Admin API of Kong 3.x: upgrade Kong", r.cfg.AdminURL, v)}
	}
	conf, _ := root["configuration"].(map[string]any)
	db, _ := conf["database"].(string)
	switch {
	case db == "off" && r.cfg.Mode != ModeDBLess:
		return &ConfigError{Field: "mode", Msg: fmt.Sprintf("Kong %s at %s runs without a database (database=off): its Admin API cannot write upstreams, targets or plugins; use mode: dbless", v, r.cfg.AdminURL)}
	case db != "" && db != "off" && r.cfg.Mode == ModeDBLess:
		return &ConfigError{Field: "mode", Msg: fmt.Sprintf("Kong %s at %s uses a database (database=%s): /config exists only on DB-less Kong; use mode: targets", v, r.cfg.AdminURL, db)}
	}
	return nil
}

// parseVersion reads major.minor of a Kong version ("3.4.3.5-enterprise-edition" -> 3.4).
func parseVersion(v string) [2]int {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return [2]int{}
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return [2]int{}
	}
	return [2]int{ma, mi}
}

// before reports whether the node is known to run a version before major.minor.
func (r *Router) before(major, minor int) bool {
	v := r.version
	return v[0] != 0 && (v[0] < major || v[0] == major && v[1] < minor)
}

// logBatching returns the http-log config fields that batch entries for the node's version:
// Kong 3.3 added config.queue (kong/tools/queue_schema.lua) and deprecated queue_size and
// flush_timeout; 3.0-3.2 know only those two and refuse `queue` as an unknown field.
func (r *Router) logBatching(flush time.Duration) map[string]any {
	f := 1.0
	if flush > 0 {
		f = flush.Seconds()
	}
	if r.before(3, 3) {
		return map[string]any{"queue_size": 100, "flush_timeout": f}
	}
	return map[string]any{"queue": map[string]any{"max_batch_size": 100, "max_coalescing_delay": f}}
}

// settle waits until the Admin node's balancer of the upstream holds exactly the targets and
// weights its database has (GET /upstreams/{u}/health?balancer_health=1: details.hosts with
// nodeWeight), bounded by Propagation, then ClusterWait for the other nodes of a cluster. Where
// the node cannot show its balancer (no data: a control plane, or no balancer yet) it falls back
// to a fixed wait of Propagation. strict: a balancer still behind at the bound is an error;
// otherwise (rollback, the end of a promotion: the database is already right) a warning.
func (r *Router) settle(ctx context.Context, upstreamID, why string, strict bool) error {
	if r.cfg.Propagation <= 0 {
		return nil
	}
	if r.noHealth {
		return r.wait(ctx, why)
	}
	start := time.Now()
	deadline := start.Add(r.cfg.Propagation)
	poll := 50 * time.Millisecond
	for {
		ts, err := r.listTargets(ctx, upstreamID)
		if err != nil {
			return fmt.Errorf("kong: verify propagation after %s: list targets: %w", why, err)
		}
		hosts, known, err := r.balancer(ctx, upstreamID)
		if err != nil {
			return fmt.Errorf("kong: verify propagation after %s: %w", why, err)
		}
		if !known {
			r.noHealth = true
			r.log.Info("kong: the Admin node shows no balancer for the upstream (GET /upstreams/{u}/health has no data): propagation is a fixed wait", "wait", r.cfg.Propagation)
			return r.sleep(ctx, r.cfg.Propagation-time.Since(start)+r.cfg.ClusterWait, why)
		}
		db := map[string]int{}
		for _, t := range ts {
			db[t.Addr] = t.Weight
		}
		diff := balancerDiff(db, hosts)
		if diff == "" {
			r.log.Debug("kong balancer holds the change", "after", why, "took", time.Since(start).Round(time.Millisecond))
			return r.sleep(ctx, r.cfg.ClusterWait, why+" (other nodes of the cluster)")
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("kong: after %s, the Admin node's balancer still differs from its database after %s (%s): Kong rebuilds balancers every worker_state_update_frequency; raise gateway.kong.propagation above it",
				why, r.cfg.Propagation, diff)
			if strict {
				return errors.New(msg)
			}
			r.log.Warn(msg)
			return nil
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("kong: verify propagation after %s: %w", why, context.Cause(ctx))
		case <-t.C:
		}
		poll = min(poll*2, 500*time.Millisecond)
	}
}

// balancer reads the node's balancer of an upstream: target address -> nodeWeight. known is false
// when the node has none to show.
func (r *Router) balancer(ctx context.Context, upstreamID string) (map[string]int, bool, error) {
	var ans struct {
		Data *struct {
			Details struct {
				Hosts []struct {
					Host       string `json:"host"`
					Port       int    `json:"port"`
					NodeWeight int    `json:"nodeWeight"`
				} `json:"hosts"`
			} `json:"details"`
		} `json:"data"`
	}
	q := struct {
		B int `url:"balancer_health"`
	}{1}
	if err := r.call(ctx, http.MethodGet, "/upstreams/"+upstreamID+"/health", q, nil, &ans); err != nil {
		return nil, false, fmt.Errorf("read the balancer of the upstream (GET /upstreams/%s/health): %w", upstreamID, err)
	}
	if ans.Data == nil {
		return nil, false, nil
	}
	out := map[string]int{}
	for _, h := range ans.Data.Details.Hosts {
		addr, err := NormalizeAddress(h.Host + ":" + strconv.Itoa(h.Port))
		if err != nil {
			addr = h.Host + ":" + strconv.Itoa(h.Port)
		}
		if strings.Contains(h.Host, ":") { // IPv6
			addr = "[" + h.Host + "]:" + strconv.Itoa(h.Port)
		}
		out[addr] = h.NodeWeight
	}
	return out, true, nil
}

// balancerDiff describes how the balancer differs from the database ("" when it does not).
func balancerDiff(db, bal map[string]int) string {
	var d []string
	for a, w := range db {
		switch b, ok := bal[a]; {
		case !ok:
			d = append(d, fmt.Sprintf("%s not yet in the balancer", a))
		case b != w:
			d = append(d, fmt.Sprintf("%s at weight %d, not %d", a, b, w))
		}
	}
	for a := range bal {
		if _, ok := db[a]; !ok {
			d = append(d, fmt.Sprintf("%s still in the balancer", a))
		}
	}
	return strings.Join(d, "; ")
}
