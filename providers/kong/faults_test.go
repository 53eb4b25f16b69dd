package kong

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
)

// Propagation is verified on the node's balancer (GET /upstreams/{u}/health), not waited for: with
// Kong slower than a fixed wait, SetSplit returns only once the balancer routes by the new weights;
// with a balancer that never follows, it fails and says what to raise.
func TestPropagationIsVerified(t *testing.T) {
	t.Parallel()
	t.Run("slow balancer: SetSplit returns when the node routes by it", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, kongtest.WithBalancerDelay(300*time.Millisecond))
		f.kong.SyncBalancer()
		cfg := f.config(ModeTargets)
		cfg.Propagation = 5 * time.Second
		r := newRouter(t, cfg)
		setUp(t, r, f)
		for _, s := range []providers.Split{{Canary: 250, Baseline: 250}, {Canary: 5000, Baseline: 5000}, {}} {
			if err := r.SetSplit(ctx(t), s); err != nil {
				t.Fatal(err)
			}
			db := map[string]int{}
			for _, tg := range f.kong.Targets("web-up") {
				db[tg.Target] = tg.Weight
			}
			if bal := f.kong.BalancerWeights("web-up"); js(bal) != js(db) {
				t.Fatalf("split %s: SetSplit returned while the balancer holds %v, the database %v", s, bal, db)
			}
		}
		if err := r.Rollback(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if bal := f.kong.BalancerWeights("web-up"); len(bal) != 2 {
			t.Fatalf("balancer after rollback %v, want the two stable targets", bal)
		}
	})
	t.Run("balancer that never follows: an error naming the setting", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		cfg := f.config(ModeTargets)
		cfg.Propagation = 200 * time.Millisecond
		r := newRouter(t, cfg)
		setUp(t, r, f)
		f.kong.FreezeBalancer()
		err := r.SetSplit(ctx(t), providers.Split{Canary: 1000, Baseline: 1000})
		if err == nil || !strings.Contains(err.Error(), "worker_state_update_frequency") || !strings.Contains(err.Error(), "at weight 100, not 4") {
			t.Fatalf("SetSplit with a frozen balancer: %v", err)
		}
	})
}

// A hybrid-mode control plane has no balancer to show: propagation falls back to a fixed wait, and
// the health endpoint is asked once, not at every change.
func TestPropagationOnAControlPlane(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kongtest.WithControlPlane())
	cfg := f.config(ModeTargets)
	cfg.Propagation = 50 * time.Millisecond
	r := newRouter(t, cfg)
	setUp(t, r, f)
	for _, s := range []providers.Split{{Canary: 1000, Baseline: 1000}, {Canary: 5000, Baseline: 5000}} {
		start := time.Now()
		if err := r.SetSplit(ctx(t), s); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < cfg.Propagation {
			t.Fatalf("SetSplit %s returned after %s, before the fixed wait of %s", s, took, cfg.Propagation)
		}
	}
	n := 0
	for _, rq := range f.kong.Requests() {
		if strings.HasSuffix(rq.Path, "/health") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d health requests, want 1 (the control plane has no balancer: fixed waits after it)", n)
	}
}

func TestPropagationSpec(t *testing.T) {
	t.Parallel()
	zero, five := time.Duration(0), 5*time.Second
	for _, tc := range []struct {
		name string
		p    *time.Duration
		want time.Duration
	}{
		{"unset: the default", nil, DefaultPropagation},
		{"explicit 0: no wait at all", &zero, -1},
		{"5s", &five, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Spec{Admin: "http://127.0.0.1:1", Service: "web", Propagation: tc.p}
			r, err := New(s.Config("r1", nil, nil))
			if err != nil {
				t.Fatal(err)
			}
			if r.cfg.Propagation != tc.want {
				t.Fatalf("propagation %v, want %v", r.cfg.Propagation, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		spec  string
		field string
	}{
		{"negative propagation", "propagation: -1s", "propagation"},
		{"propagation + clusterWait over the engine's call time", "propagation: 10s\nclusterWait: 5s", "propagation"},
		{"default propagation + a long clusterWait", "clusterWait: 6s", "clusterWait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var s Spec
			if err := yaml.Unmarshal([]byte("admin: http://x:1\nservice: web\n"+tc.spec+"\n"), &s); err != nil {
				t.Fatal(err)
			}
			ps := s.Problems()
			if len(ps) != 1 || ps[0].Field != tc.field {
				t.Fatalf("problems %v, want one on %s", ps, tc.field)
			}
		})
	}
	var s Spec
	if err := yaml.Unmarshal([]byte("admin: http://x:1\nservice: web\npropagation: 0s\n"), &s); err != nil || s.Propagation == nil || *s.Propagation != 0 {
		t.Fatalf("yaml propagation: 0s = %v (%v), want an explicit zero", s.Propagation, err)
	}
}

// A 404 during rollback (Kong came back without its database; the upstream was created again with
// a new id) is not "nothing registered": nothing was rolled back and the error says so.
func TestRollbackAfterKongLostItsDatabase(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := newRouter(t, f.config(ModeTargets))
	setUp(t, r, f)
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 1000, Baseline: 1000}); err != nil {
		t.Fatal(err)
	}
	f.kong.ResetDatabase()
	for _, e := range []struct {
		kind string
		body map[string]any
	}{{"upstreams", map[string]any{"name": "web-up"}}, {"services", map[string]any{"name": "web", "host": "web-up"}}} {
		if _, err := f.kong.Create("", e.kind, e.body); err != nil {
			t.Fatal(err)
		}
	}
	err := r.Rollback(ctx(t))
	if err == nil || !errors.Is(err, ErrGatewayChanged) || errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("Rollback after the upstream was lost = %v, want ErrGatewayChanged and not ErrNotFound", err)
	}
	// and a new process that resumes it refuses the recorded original of another upstream id
	r2 := newRouter(t, f.config(ModeTargets))
	if err := r2.SetOriginal([]byte(`{"mode":"targets","upstream":"web-up","upstreamId":"00000000-0000-4000-8000-000000000000","targets":[{"target":"10.0.0.1:80","weight":100}]}`)); err != nil {
		t.Fatal(err)
	}
	if err := r2.Rollback(ctx(t)); !errors.Is(err, ErrGatewayChanged) {
		t.Fatalf("resumed Rollback against a re-created upstream = %v, want ErrGatewayChanged", err)
	}
}

// The node is read at preflight (GET /): a mode it cannot serve, or Kong before 3.0, is refused
// before anything moves; http-log gets the batching fields its version knows.
func TestNodePreflight(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		opts  []kongtest.Option
		mode  Mode
		field string // ConfigError field, "" for success
		msg   string
	}{
		{"targets on DB-less Kong", []kongtest.Option{kongtest.WithDBLess()}, ModeTargets, "mode", "database=off"},
		{"hash on DB-less Kong", []kongtest.Option{kongtest.WithDBLess()}, ModeHash, "mode", "use mode: dbless"},
		{"dbless on a Kong with a database", nil, ModeDBLess, "mode", "database=postgres"},
		{"Kong 2.8", []kongtest.Option{kongtest.WithVersion("2.8.4")}, ModeTargets, "admin", "Kong 3.x"},
		{"Kong 3.4 Enterprise", []kongtest.Option{kongtest.WithVersion("3.4.3.5-enterprise-edition")}, ModeTargets, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tc.opts...)
			cfg := f.config(tc.mode)
			cfg.HashOn = "ip"
			err := newRouter(t, cfg).Preflight(ctx(t))
			var ce *ConfigError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Preflight: %v", err)
			case tc.field != "" && (!errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(err.Error(), tc.msg)):
				t.Fatalf("Preflight = %v, want gateway.kong.%s mentioning %q", err, tc.field, tc.msg)
			}
		})
	}
}

func TestHTTPLogByVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version string
		want    []string
		absent  string
	}{
		{"3.2.4", []string{`"queue_size":100`, `"flush_timeout":1`}, `"queue":`},
		{"3.3.0", []string{`"queue":{"max_batch_size":100,"max_coalescing_delay":1}`}, `"queue_size"`},
		{"3.9.1", []string{`"queue":{"max_batch_size":100,"max_coalescing_delay":1}`}, `"queue_size"`},
	} {
		t.Run(tc.version, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kongtest.WithVersion(tc.version))
			cfg := f.config(ModeTargets)
			cfg.LogEndpoint = "http://127.0.0.1:9/"
			r := newRouter(t, cfg)
			if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
				t.Fatalf("Kong %s refused the http-log plugin: %v", tc.version, err)
			}
			var body string
			for _, rq := range f.kong.Requests() {
				if rq.Method == http.MethodPost && strings.HasSuffix(rq.Path, "/plugins") {
					body = rq.Body
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("POST plugins body %s lacks %s", body, w)
				}
			}
			if strings.Contains(body, tc.absent) {
				t.Errorf("POST plugins body %s has %s", body, tc.absent)
			}
			if err := r.Rollback(ctx(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUnauthorizedMessage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kongtest.WithToken("secret"))
	for _, tc := range []struct {
		name, token, want string
	}{
		{"no token set", "", "none was set"},
		{"a wrong token", "nope", "the admin token is wrong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := f.config(ModeTargets)
			cfg.Token = tc.token
			err := newRouter(t, cfg).Preflight(ctx(t))
			if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), DefaultTokenEnv) {
				t.Fatalf("Preflight = %v, want ErrUnauthorized saying %q", err, tc.want)
			}
		})
	}
}

// A resumed run at the last step (50/50: stable at weight 0) re-registers baseline and canary
// without touching their weights: no moment in which every target has weight 0.
func TestResumeAtTheLastStepKeepsCapacity(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.kong.Create("", "targets", map[string]any{"upstream": "web-up", "target": "10.9.9.9:80", "weight": 0}); err != nil {
		t.Fatal(err)
	}
	r := newRouter(t, f.config(ModeTargets))
	orig, err := r.Original(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	setUp(t, r, f)
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 5000, Baseline: 5000}); err != nil {
		t.Fatal(err)
	}
	r2 := newRouter(t, f.config(ModeTargets))
	if err := r2.Preflight(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := r2.SetOriginal(orig); err != nil {
		t.Fatal(err)
	}
	n := len(f.kong.Requests())
	setUp(t, r2, f)
	for _, rq := range f.kong.Requests()[n:] {
		if rq.Method != http.MethodGet {
			t.Errorf("re-registering made %s %s %s", rq.Method, rq.Path, rq.Body)
		}
	}
	if got := get(t, f.kong.ProxyURL(), 20, nil); got["canary"]+got["baseline"] != 20 {
		t.Fatalf("after re-registering: %v, want the 50/50 split serving", got)
	}
	if _, err := newRouter(t, f.config(ModeTargets)).Original(ctx(t)); err == nil || !strings.Contains(err.Error(), "already holds targets of this rollout") {
		t.Fatalf("Original from a router that found this rollout's targets = %v, want an error: it is not original", err)
	}
	if err := r2.Rollback(ctx(t)); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{f.stable[0].addr(): 100, f.stable[1].addr(): 100, "10.9.9.9:80": 0}
	got := map[string]int{}
	for _, tg := range f.kong.Targets("web-up") {
		got[tg.Target] = tg.Weight
	}
	if js(got) != js(want) {
		t.Fatalf("after rollback %v, want %v (the drained target untouched)", got, want)
	}
}

// Deploying sets the split to all-stable before registering anything: stable keeps its own weights
// (no PATCH of the user's targets), as it does at every all-stable split.
func TestAllStableSplitKeepsStableWeights(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := newRouter(t, f.config(ModeTargets))
	n := len(f.kong.Requests())
	if err := r.SetSplit(ctx(t), providers.Split{}); err != nil {
		t.Fatal(err)
	}
	for _, rq := range f.kong.Requests()[n:] {
		if rq.Method == http.MethodPatch {
			t.Fatalf("an all-stable split changed a target: %s %s %s", rq.Method, rq.Path, rq.Body)
		}
	}
}

// bluegreen refuses a green upstream that already serves with targets of its own.
func TestBlueGreenRefusesLiveForeignGreenTargets(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.kong.Create("", "upstreams", map[string]any{"name": "web-green"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.kong.Create("", "targets", map[string]any{"upstream": "web-green", "target": "10.7.7.7:80", "weight": 100}); err != nil {
		t.Fatal(err)
	}
	cfg := f.config(ModeBlueGreen)
	cfg.GreenUpstream = "web-green"
	r := newRouter(t, cfg)
	err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL})
	if err == nil || !strings.Contains(err.Error(), "10.7.7.7:80 (weight 100)") {
		t.Fatalf("SetUpstreams with a live foreign green target = %v", err)
	}
	if ts := f.kong.Targets("web-green"); len(ts) != 1 {
		t.Fatalf("green targets %v, want the foreign one alone", ts)
	}
}

// configTargets reads every shape a declarative target's upstream reference takes.
func TestDeclarativeTargetShapes(t *testing.T) {
	t.Parallel()
	r := &Router{st: state{upstream: "web-up", upstreamID: "11111111-1111-4111-8111-111111111111"}}
	for _, tc := range []struct {
		name string
		doc  string
	}{
		{"Kong's export: top-level, plain id", "upstreams: [{name: web-up, id: 11111111-1111-4111-8111-111111111111}]\ntargets: [{target: a:80, upstream: 11111111-1111-4111-8111-111111111111}, {target: z:80, upstream: other}]"},
		{"top-level, name", "upstreams: [{name: web-up}]\ntargets: [{target: a:80, upstream: web-up}]"},
		{"top-level, {id: ...}", "upstreams: [{name: web-up}]\ntargets: [{target: a:80, upstream: {id: 11111111-1111-4111-8111-111111111111}}]"},
		{"top-level, {name: ...}", "upstreams: [{name: web-up}]\ntargets: [{target: a:80, upstream: {name: web-up}}]"},
		{"decK: nested under the upstream", "upstreams: [{name: web-up, targets: [{target: a:80}]}]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(tc.doc), &doc); err != nil {
				t.Fatal(err)
			}
			ts, set, err := r.configTargets(doc)
			if err != nil || len(ts) != 1 || ts[0]["target"] != "a:80" {
				t.Fatalf("targets %v, %v; want a:80", ts, err)
			}
			set(ts)
			up := doc["upstreams"].([]any)[0].(map[string]any)
			if nested := up["targets"].([]any); len(nested) != 1 || nested[0].(map[string]any)["upstream"] != nil {
				t.Fatalf("written back %v, want a:80 nested without a reference", up["targets"])
			}
			if top, ok := doc["targets"].([]any); ok && len(top) != strings.Count(tc.doc, "z:80") {
				t.Fatalf("top-level targets left %v", top)
			}
		})
	}
}

// The http-log plugin a killed run added: a resumed run points it at its own receiver (the old one
// is gone), an abort from another process deletes it.
func TestHTTPLogOfAKilledRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(ModeTargets)
	cfg.LogEndpoint = "http://127.0.0.1:9/old"
	setUp(t, newRouter(t, cfg), f)
	cfg.LogEndpoint = "http://127.0.0.1:9/new"
	setUp(t, newRouter(t, cfg), f)
	ps := f.kong.Plugins()
	if len(ps) != 1 || ps[0]["config"].(map[string]any)["http_endpoint"] != "http://127.0.0.1:9/new" {
		t.Fatalf("plugins after the resumed run registered: %v, want one posting to the new receiver", ps)
	}
	if err := newRouter(t, cfg).Rollback(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if ps := f.kong.Plugins(); len(ps) != 0 {
		t.Fatalf("plugins after an abort from another process: %v", ps)
	}
}

// After a bluegreen promotion green is an ordinary upstream: the next rollout (same service, so the
// same rollout tag) starts on it with the promoted canary as its stable.
func TestRolloutAfterBlueGreenPromotion(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(ModeBlueGreen)
	cfg.GreenUpstream = "web-green"
	r := newRouter(t, cfg)
	if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 10000}); err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if up := f.kong.Entity("upstreams", "web-green"); len(up["tags"].([]any)) != 0 {
		t.Fatalf("green upstream keeps tags %v after promotion", up["tags"])
	}
	next := newRouter(t, f.config(ModeTargets))
	if err := next.Preflight(ctx(t)); err != nil {
		t.Fatalf("the next rollout's preflight: %v", err)
	}
	if len(next.st.stable) != 1 || next.st.stable[0].addr != f.canary.addr() || len(next.st.cohorts) != 0 {
		t.Fatalf("next rollout: stable %v, cohorts %v; want the promoted canary as stable and nothing adopted", next.st.stable, next.st.cohorts)
	}
}
