package kongtest

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Nested plugin lists ignore `tags` (Kong/kong#6779; kong/db/strategies/postgres/init.lua page()
// picks page_for_service before options.tags), the top-level list applies it.
func TestNestedPluginsIgnoreTags(t *testing.T) {
	t.Parallel()
	s := New()
	t.Cleanup(s.Close)
	c := client{t: t, base: s.AdminURL()}
	if _, err := s.Create("", "services", map[string]any{"name": "web", "host": "up"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("", "plugins", map[string]any{"name": "http-log", "service": map[string]any{"name": "web"},
		"config": map[string]any{"http_endpoint": "http://10.0.0.9:9000/"}, "tags": []string{"team-audit"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		n          int
	}{
		{"nested: filter ignored", "/services/web/plugins?tags=canaryctl", 1},
		{"top-level: filter applied", "/plugins?tags=canaryctl", 0},
		{"top-level: matching tag", "/plugins?tags=team-audit", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			status, body, _ := c.do("GET", tc.path, nil)
			if status != 200 || len(body["data"].([]any)) != tc.n {
				t.Fatalf("GET %s = %d, %d plugins, want %d", tc.path, status, len(body["data"].([]any)), tc.n)
			}
		})
	}
}

// GET /upstreams/{u}/health reports what the node's balancer holds (kong/api/routes/upstreams.lua,
// kong/db/dao/targets.lua page_for_upstream_with_health, kong/runloop/balancer/balancers.lua
// getTargetStatus / getStatus; Kong 3.0-3.10): the balancer follows the database only when it is
// rebuilt, and the data plane routes by the balancer.
func TestHealthFollowsTheBalancer(t *testing.T) {
	t.Parallel()
	s, c := seeded(t)
	if status, body, _ := c.do("POST", "/upstreams/up/targets", map[string]any{"target": "10.0.0.1:80", "weight": 10}); status != 201 {
		t.Fatalf("POST target = %d %v", status, body)
	}
	s.FreezeBalancer()
	if status, body, _ := c.do("PATCH", "/upstreams/up/targets/10.0.0.1:80", map[string]any{"weight": 20}); status != 200 {
		t.Fatalf("PATCH = %d %v", status, body)
	}
	if status, body, _ := c.do("POST", "/upstreams/up/targets", map[string]any{"target": "10.0.0.2:80", "weight": 0}); status != 201 {
		t.Fatalf("POST target = %d %v", status, body)
	}
	status, body, _ := c.do("GET", "/upstreams/up/health", nil)
	if status != 200 || body["node_id"] == nil {
		t.Fatalf("GET health = %d %v", status, body)
	}
	byTarget := map[string]map[string]any{}
	for _, d := range body["data"].([]any) {
		m := d.(map[string]any)
		byTarget[m["target"].(string)] = m
	}
	if got := byTarget["10.0.0.1:80"]; got["weight"] != 20.0 || got["health"] != "HEALTHCHECKS_OFF" || got["data"].(map[string]any)["nodeWeight"] != 10.0 {
		t.Fatalf("frozen balancer: target 1 = %v, want DB weight 20, nodeWeight 10", got)
	}
	if got := byTarget["10.0.0.2:80"]; got["health"] != "DNS_ERROR" || got["data"] != nil {
		t.Fatalf("frozen balancer: new target = %v, want DNS_ERROR without data (not in the balancer)", got)
	}
	s.ThawBalancer()
	status, body, _ = c.do("GET", "/upstreams/up/health?balancer_health=1", nil)
	d, _ := body["data"].(map[string]any)
	if status != 200 || d["balancer_health"] != "HEALTHY" || d["health"] != "HEALTHCHECKS_OFF" {
		t.Fatalf("balancer health = %d %v", status, body)
	}
	hosts := d["details"].(map[string]any)["hosts"].([]any)
	got := map[string]float64{}
	for _, h := range hosts {
		m := h.(map[string]any)
		got[m["host"].(string)] = m["nodeWeight"].(float64)
		if m["weight"].(map[string]any)["total"] != m["nodeWeight"] {
			t.Fatalf("host %v: weight.total != nodeWeight", m)
		}
	}
	if len(got) != 2 || got["10.0.0.1"] != 20 || got["10.0.0.2"] != 0 {
		t.Fatalf("thawed balancer hosts = %v, want 10.0.0.1:20 and 10.0.0.2:0", got)
	}
	if status, _, _ := c.do("GET", "/upstreams/nope/health", nil); status != 404 {
		t.Fatalf("health of a missing upstream = %d, want 404", status)
	}
}

// The http-log schema follows the version (kong/plugins/http-log/schema.lua): 3.0-3.2 have
// queue_size/flush_timeout and no `queue`; 3.3 added `queue`.
func TestHTTPLogSchemaByVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version string
		config  map[string]any
		status  int
		field   string
	}{
		{"3.2.2", map[string]any{"http_endpoint": "http://10.0.0.9/", "queue": map[string]any{"max_batch_size": 100}}, 400, "queue"},
		{"3.2.2", map[string]any{"http_endpoint": "http://10.0.0.9/", "queue_size": 100, "flush_timeout": 1}, 201, ""},
		{"3.3.0", map[string]any{"http_endpoint": "http://10.0.0.9/", "queue": map[string]any{"max_batch_size": 100}}, 201, ""},
		{"3.9.1", map[string]any{"http_endpoint": "http://10.0.0.9/", "queue_size": 100}, 201, ""},
	} {
		t.Run(tc.version+"/"+js(tc.config), func(t *testing.T) {
			t.Parallel()
			s := New(WithVersion(tc.version))
			t.Cleanup(s.Close)
			c := client{t: t, base: s.AdminURL()}
			status, body, hdr := c.do("GET", "/", nil)
			if status != 200 || body["version"] != tc.version || !strings.Contains(hdr.Get("Server"), tc.version) {
				t.Fatalf("GET / = %d %v (Server %q), want version %s", status, body, hdr.Get("Server"), tc.version)
			}
			if _, err := s.Create("", "services", map[string]any{"name": "web", "host": "up"}); err != nil {
				t.Fatal(err)
			}
			status, body, _ = c.do("POST", "/services/web/plugins", map[string]any{"name": "http-log", "config": tc.config})
			if status != tc.status {
				t.Fatalf("POST http-log = %d %v, want %d", status, body, tc.status)
			}
			if tc.field != "" {
				if f := body["fields"].(map[string]any)["config"].(map[string]any)[tc.field]; f != "unknown field" {
					t.Fatalf("fields = %v, want config.%s: unknown field", body["fields"], tc.field)
				}
			}
		})
	}
}

// GET /config exports flat lists with foreign keys as plain ids (kong/db/declarative/export.lua
// export_from_db_impl, not expanded), also for a configuration that was posted nested.
func TestDBLessExportShape(t *testing.T) {
	t.Parallel()
	s := New(WithDBLess())
	t.Cleanup(s.Close)
	c := client{t: t, base: s.AdminURL()}
	cfg := map[string]any{"_format_version": "3.0",
		"upstreams": []any{map[string]any{"name": "up", "targets": []any{map[string]any{"target": "10.0.0.1:80"}}}},
		"targets":   []any{map[string]any{"target": "10.0.0.2:80", "upstream": map[string]any{"name": "up"}}}}
	if status, body, _ := c.do("POST", "/config", cfg); status != 201 {
		t.Fatalf("POST /config = %d %v", status, body)
	}
	_, body, _ := c.do("GET", "/config", nil)
	var doc struct {
		Upstreams []map[string]any `yaml:"upstreams"`
		Targets   []map[string]any `yaml:"targets"`
	}
	if err := yaml.Unmarshal([]byte(body["config"].(string)), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Upstreams) != 1 || doc.Upstreams[0]["targets"] != nil || len(doc.Targets) != 2 {
		t.Fatalf("exported %v", body["config"])
	}
	for _, tg := range doc.Targets {
		if tg["upstream"] != doc.Upstreams[0]["id"] {
			t.Fatalf("target %v: upstream is not the upstream's plain id %v", tg, doc.Upstreams[0]["id"])
		}
	}
}

// After ResetDatabase every remembered id is gone: a re-created upstream has a new id.
func TestResetDatabase(t *testing.T) {
	t.Parallel()
	s, c := seeded(t)
	_, up, _ := c.do("GET", "/upstreams/up", nil)
	s.ResetDatabase()
	if _, err := s.Create("", "upstreams", map[string]any{"name": "up"}); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := c.do("GET", "/upstreams/"+up["id"].(string)+"/targets", nil); status != 404 {
		t.Fatalf("targets of the old upstream id = %d, want 404", status)
	}
}
