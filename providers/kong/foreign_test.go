package kong

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
)

// seedForeign adds what a real Kong holds besides the rollout: a target an operator drained
// (weight 0) in the rollout's upstream, an http-log plugin of the user's on the Service (tagged
// team-audit) unless the service must stay free of it, a global plugin and a route plugin, and an
// upstream of another team with a target. It returns their ids by name.
func seedForeign(t *testing.T, f *fixture, servicePlugin bool) map[string]string {
	t.Helper()
	ids := map[string]string{}
	add := func(name, kind string, body map[string]any) {
		t.Helper()
		e, err := f.kong.Create("", kind, body)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = e["id"].(string)
	}
	add("drained", "targets", map[string]any{"upstream": "web-up", "target": "10.9.9.9:80", "weight": 0, "tags": []string{"team-ops", "drained"}})
	if servicePlugin {
		add("user-http-log", "plugins", map[string]any{"name": "http-log", "service": map[string]any{"name": "web"},
			"config": map[string]any{"http_endpoint": "http://10.0.0.9:9000/audit"}, "tags": []string{"team-audit"}})
	}
	add("global-http-log", "plugins", map[string]any{"name": "http-log", "config": map[string]any{"http_endpoint": "http://10.0.0.9:9000/all"}, "tags": []string{"team-audit"}})
	add("route-http-log", "plugins", map[string]any{"name": "http-log", "route": map[string]any{"name": "web"},
		"config": map[string]any{"http_endpoint": "http://10.0.0.9:9000/route"}, "tags": []string{"team-audit", "canaryctl-ish"}})
	add("other-up", "upstreams", map[string]any{"name": "other-up", "tags": []string{"team-b"}})
	add("other-target", "targets", map[string]any{"upstream": "other-up", "target": "10.8.8.8:80", "weight": 5, "tags": []string{"team-b"}})
	return ids
}

// entityJSON renders an entity for comparison; DB-less Kong re-creates every entity on each POST
// /config, so there the timestamps are left out.
func entityJSON(e map[string]any, dbless bool) string {
	if e == nil {
		return "<gone>"
	}
	if dbless {
		delete(e, "created_at")
		delete(e, "updated_at")
	}
	b, _ := json.Marshal(e)
	return string(b)
}

// TestNothingForeignIsTouched seeds foreign plugins, targets (one drained at weight 0) and tags,
// then ends a rollout of every mode by promotion, rollback, an abort from another process, and a
// resume (another process adopting the rollout at its last step) followed by rollback or promotion.
// Nothing canaryctl did not create may be deleted or edited; the stable targets come back with
// their original weights (or, after a promotion, are gone as documented).
func TestNothingForeignIsTouched(t *testing.T) {
	t.Parallel()
	type modeCase struct {
		mode  Mode
		opts  []kongtest.Option
		last  providers.Split // the last step's split
		setup func(*Config)
	}
	modes := []modeCase{
		{mode: ModeTargets, last: providers.Split{Canary: 5000, Baseline: 5000}},
		{mode: ModeHash, last: providers.Split{Canary: 5000, Baseline: 5000}, setup: func(c *Config) { c.HashOn, c.HashOnHeader = "header", "X-User" }},
		{mode: ModeDBLess, opts: []kongtest.Option{kongtest.WithDBLess()}, last: providers.Split{Canary: 5000, Baseline: 5000}},
		{mode: ModeBlueGreen, last: providers.Split{Canary: 10000}, setup: func(c *Config) { c.GreenUpstream = "web-green" }},
		{mode: ModeCanaryPlugin, opts: []kongtest.Option{kongtest.WithEnterprise()}, last: providers.Split{Canary: 5000}},
	}
	ends := []string{"promote", "rollback", "abort", "resume+rollback", "resume+promote"}
	for _, mc := range modes {
		for _, end := range ends {
			t.Run(string(mc.mode)+"/"+end, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, mc.opts...)
				dbless := mc.mode == ModeDBLess
				ids := seedForeign(t, f, false)
				if mc.mode == ModeBlueGreen {
					// a green upstream of the user's, with a drained target of its own
					if _, err := f.kong.Create("", "upstreams", map[string]any{"name": "web-green", "tags": []string{"team-ops"}}); err != nil {
						t.Fatal(err)
					}
					e, err := f.kong.Create("", "targets", map[string]any{"upstream": "web-green", "target": "10.9.9.8:80", "weight": 0, "tags": []string{"team-ops"}})
					if err != nil {
						t.Fatal(err)
					}
					ids["green-drained"] = e["id"].(string)
				}
				kinds := map[string]string{"drained": "targets", "global-http-log": "plugins", "route-http-log": "plugins", "other-up": "upstreams",
					"other-target": "targets", "green-drained": "targets"}
				before := map[string]string{}
				for name, id := range ids {
					before[name] = entityJSON(f.kong.Entity(kinds[name], id), dbless)
				}
				// the user's own tags on a stable target: a rollback gives back its weight, not new tags
				if err := f.kong.SetTargetTags("web-up", f.stable[0].addr(), []string{"team-web", "az-a"}); err != nil {
					t.Fatal(err)
				}
				upBefore := f.kong.Entity("upstreams", "web-up")
				stableBefore := f.kong.Targets("web-up")

				cfg := f.config(mc.mode)
				if mc.setup != nil {
					mc.setup(&cfg)
				}
				if mc.mode == ModeTargets || mc.mode == ModeHash || mc.mode == ModeDBLess {
					// propagation verified on the node's balancer (immediate here): the health
					// reads must not disturb anything either
					cfg.Propagation = 5 * time.Second
				}
				r := newRouter(t, cfg)
				orig, err := r.Original(ctx(t))
				if err != nil {
					t.Fatal(err)
				}
				if mc.mode != ModeBlueGreen && mc.mode != ModeCanaryPlugin {
					if err := r.SetUpstreams(ctx(t), providers.Baseline, []string{f.baseline.URL}); err != nil {
						t.Fatal(err)
					}
				}
				if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
					t.Fatal(err)
				}
				if err := r.SetSplit(ctx(t), providers.Split{}); err != nil {
					t.Fatal(err)
				}
				if err := r.SetSplit(ctx(t), mc.last); err != nil {
					t.Fatal(err)
				}
				again := func() *Router { // another process: preflight, then the recorded original
					r2 := newRouter(t, cfg)
					if err := r2.Preflight(ctx(t)); err != nil {
						t.Fatal(err)
					}
					if err := r2.SetOriginal(orig); err != nil {
						t.Fatal(err)
					}
					return r2
				}
				resume := func() *Router {
					r2 := again()
					if mc.mode != ModeBlueGreen && mc.mode != ModeCanaryPlugin {
						if err := r2.SetUpstreams(ctx(t), providers.Baseline, []string{f.baseline.URL}); err != nil {
							t.Fatal(err)
						}
					}
					if err := r2.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
						t.Fatal(err)
					}
					if err := r2.SetSplit(ctx(t), mc.last); err != nil {
						t.Fatal(err)
					}
					return r2
				}
				promoted := false
				switch end {
				case "promote":
					err, promoted = r.Promote(ctx(t)), true
				case "rollback":
					err = r.Rollback(ctx(t))
				case "abort":
					err = again().Rollback(ctx(t))
				case "resume+rollback":
					err = resume().Rollback(ctx(t))
				case "resume+promote":
					err, promoted = resume().Promote(ctx(t)), true
				}
				if err != nil {
					t.Fatal(err)
				}
				for name, id := range ids {
					if got := entityJSON(f.kong.Entity(kinds[name], id), dbless); got != before[name] {
						t.Errorf("foreign %s changed:\n before %s\n after  %s", name, before[name], got)
					}
				}
				for _, p := range f.kong.Plugins() {
					if tags, _ := json.Marshal(p["tags"]); strings.Contains(string(tags), "rollout:") {
						t.Errorf("a plugin of the rollout is left: %v", p)
					}
				}
				up := f.kong.Entity("upstreams", "web-up")
				for _, k := range hashFields {
					if up[k] != upBefore[k] {
						t.Errorf("upstream %s = %v, want %v as before", k, up[k], upBefore[k])
					}
				}
				got := map[string]int{}
				for _, tg := range f.kong.Targets("web-up") {
					got[tg.Target] = tg.Weight
					if strings.Contains(strings.Join(tg.Tags, ","), "rollout:") {
						t.Errorf("a target of the rollout is left tagged: %+v", tg)
					}
				}
				want := map[string]int{}
				for _, tg := range stableBefore {
					want[tg.Target] = tg.Weight
				}
				if !promoted || mc.mode == ModeBlueGreen || mc.mode == ModeCanaryPlugin {
					tags := map[string]string{}
					for _, tg := range f.kong.Targets("web-up") {
						tags[tg.Target] = strings.Join(tg.Tags, ",")
					}
					for _, tg := range stableBefore {
						if got := tags[tg.Target]; got != strings.Join(tg.Tags, ",") {
							t.Errorf("stable target %s has tags %q, want %q as before", tg.Target, got, strings.Join(tg.Tags, ","))
						}
					}
				}
				if promoted && (mc.mode == ModeTargets || mc.mode == ModeHash || mc.mode == ModeDBLess) {
					// documented promoted shape: the canary at weight 100, untagged; the old stable
					// and the baseline gone; everything foreign (the drained target) as it was
					want = map[string]int{f.canary.addr(): 100, "10.9.9.9:80": 0}
				}
				if js(got) != js(want) {
					t.Errorf("web-up targets = %v, want %v", got, want)
				}
				svc := f.kong.Entity("services", "web")
				switch {
				case promoted && mc.mode == ModeBlueGreen:
					if svc["host"] != "web-green" {
						t.Errorf("service host %v after a bluegreen promotion, want web-green", svc["host"])
					}
					green := map[string]int{}
					for _, tg := range f.kong.Targets("web-green") {
						green[tg.Target] = tg.Weight
						if len(tg.Tags) > 0 && tg.Target != "10.9.9.8:80" {
							t.Errorf("green target %s keeps tags %v after promotion", tg.Target, tg.Tags)
						}
					}
					if js(green) != js(map[string]int{f.canary.addr(): 100, "10.9.9.8:80": 0}) {
						t.Errorf("green targets %v", green)
					}
				case promoted && mc.mode == ModeCanaryPlugin:
					if svc["host"] != "127.0.0.1" {
						t.Errorf("service host %v after a canary-plugin promotion, want the canary's", svc["host"])
					}
				default:
					if svc["host"] != "web-up" {
						t.Errorf("service host %v, want web-up", svc["host"])
					}
					if mc.mode == ModeBlueGreen {
						green := map[string]int{}
						for _, tg := range f.kong.Targets("web-green") {
							green[tg.Target] = tg.Weight
						}
						if js(green) != js(map[string]int{"10.9.9.8:80": 0}) {
							t.Errorf("the user's green upstream holds %v after %s, want its own drained target alone", green, end)
						}
					}
				}
			})
		}
	}
}

// TestUserHTTPLogIsNotAdopted: the user's own http-log plugin on the Service comes back from
// GET /services/{id}/plugins?tags=... (Kong ignores the filter there); it must be neither adopted
// nor deleted: canaryctl says it cannot add its own and the rollback leaves the user's alone.
func TestUserHTTPLogIsNotAdopted(t *testing.T) {
	t.Parallel()
	for _, mode := range []Mode{ModeTargets, ModeCanaryPlugin} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kongtest.WithEnterprise())
			ids := seedForeign(t, f, true)
			before := entityJSON(f.kong.Entity("plugins", ids["user-http-log"]), false)
			cfg := f.config(mode)
			cfg.LogEndpoint = "http://127.0.0.1:9/"
			r := newRouter(t, cfg)
			err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL})
			var ae *APIError
			if err == nil || !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(err.Error(), "log.manual") {
				t.Fatalf("SetUpstreams with the user's http-log on the service: %v, want the 409 explained", err)
			}
			if mode == ModeCanaryPlugin {
				if err := r.SetSplit(ctx(t), providers.Split{Canary: 1000}); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.Rollback(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if got := entityJSON(f.kong.Entity("plugins", ids["user-http-log"]), false); got != before {
				t.Fatalf("the user's http-log plugin changed:\n before %s\n after  %s", before, got)
			}
			for _, rq := range f.kong.Requests() {
				if rq.Method == http.MethodDelete && strings.Contains(rq.Path, ids["user-http-log"]) {
					t.Fatalf("DELETE of the user's plugin: %+v", rq)
				}
			}
		})
	}
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }
