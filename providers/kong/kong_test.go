package kong

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
)

func TestSplitWeights(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		split        providers.Split
		stable       []int
		nb, nc       int
		wantStable   []int
		wantBaseline int
		wantCanary   int
	}{
		{"2.5% each, one stable target", providers.Split{Canary: 250, Baseline: 250}, []int{100}, 1, 1, []int{38}, 1, 1},
		{"2.5% each, two stable targets", providers.Split{Canary: 250, Baseline: 250}, []int{100, 100}, 1, 1, []int{19, 19}, 1, 1},
		{"10% each", providers.Split{Canary: 1000, Baseline: 1000}, []int{100, 100}, 1, 1, []int{4, 4}, 1, 1},
		{"stable weights 1:2 kept", providers.Split{Canary: 1000, Baseline: 1000}, []int{10, 20}, 1, 1, []int{8, 16}, 3, 3},
		{"two canary targets", providers.Split{Canary: 250, Baseline: 250}, []int{100}, 1, 2, []int{76}, 2, 1},
		{"all canary", providers.Split{Canary: 10000}, []int{100, 50}, 1, 1, []int{0, 0}, 0, 1},
		{"no canary", providers.Split{}, []int{100, 50}, 1, 1, []int{2, 1}, 0, 0},
		{"0.01%", providers.Split{Canary: 1, Baseline: 1}, []int{1}, 1, 1, []int{9998}, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := splitWeights(tc.split, tc.stable, tc.nb, tc.nc)
			if !w.exact || !slices.Equal(w.stable, tc.wantStable) || w.baseline != tc.wantBaseline || w.canary != tc.wantCanary {
				t.Fatalf("splitWeights = %+v, want stable %v baseline %d canary %d exact", w, tc.wantStable, tc.wantBaseline, tc.wantCanary)
			}
		})
	}
}

// TestSplitWeightsExact checks the invariants on random inputs: each cohort's share of the total
// weight equals its basis points exactly, stable targets keep their ratio, weights fit Kong's range.
func TestSplitWeightsExact(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	inexact := 0
	for i := 0; i < 2000; i++ {
		c := rng.IntN(5001)
		b := rng.IntN(5001)
		if c+b > 10000 {
			b = 10000 - c
		}
		s := providers.Split{Canary: c, Baseline: b}
		stable := make([]int, 1+rng.IntN(4))
		for j := range stable {
			stable[j] = 1 + rng.IntN(200)
		}
		nb, nc := 1+rng.IntN(3), 1+rng.IntN(3)
		w := splitWeights(s, stable, nb, nc)
		total := w.canary*nc + w.baseline*nb
		sw := 0
		for _, x := range w.stable {
			if x < 0 || x > maxWeight {
				t.Fatalf("weight %d out of range for %v", x, s)
			}
			total += x
			sw += x
		}
		if w.canary > maxWeight || w.baseline > maxWeight || total == 0 {
			t.Fatalf("bad weights %+v for %v", w, s)
		}
		if !w.exact {
			inexact++
			got := roundBP(w.canary*nc, total)
			if d := got - c; d > 1 || d < -1 {
				t.Fatalf("approximate weights %+v give canary %d bp, want %d±1", w, got, c)
			}
			continue
		}
		if w.canary*nc*providers.BasisPoints != c*total || w.baseline*nb*providers.BasisPoints != b*total {
			t.Fatalf("split %v stable %v nb %d nc %d: weights %+v not exact", s, stable, nb, nc, w)
		}
		for j := range stable {
			// w.stable[j] / sw == stable[j] / sum(stable)
			sum := 0
			for _, x := range stable {
				sum += x
			}
			if w.stable[j]*sum != stable[j]*sw {
				t.Fatalf("stable ratio lost: %v -> %v", stable, w.stable)
			}
		}
	}
	t.Logf("%d of 2000 random splits needed approximate weights", inexact)
}

func TestRouterTargetsLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := newRouter(t, f.config(ModeTargets))
	if err := r.SetUpstreams(ctx(t), providers.Stable, []string{f.stable[0].URL}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetUpstreams(ctx(t), providers.Baseline, []string{f.baseline.URL}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.addr()}); err != nil {
		t.Fatal(err)
	}
	for _, tg := range f.kong.Targets("web-up") {
		if tg.Target == f.canary.addr() {
			if tg.Weight != 0 || !slices.Equal(tg.Tags, []string{"canaryctl", "cohort:canary", "rollout:r1"}) {
				t.Fatalf("canary target = %+v, want weight 0 tagged canaryctl,cohort:canary,rollout:r1", tg)
			}
		}
	}
	if got := get(t, f.kong.ProxyURL(), 40, nil); got["canary"]+got["baseline"] != 0 {
		t.Fatalf("weight-0 targets got traffic: %v", got)
	}
	split := providers.Split{Canary: 250, Baseline: 250}
	if err := r.SetSplit(ctx(t), split); err != nil {
		t.Fatal(err)
	}
	got, err := r.Split(ctx(t))
	if err != nil || got != split {
		t.Fatalf("Split() = %v, %v; want %v", got, err, split)
	}
	weights := map[string]int{}
	for _, tg := range f.kong.Targets("web-up") {
		weights[tg.Target] = tg.Weight
	}
	want := map[string]int{f.stable[0].addr(): 19, f.stable[1].addr(): 19, f.baseline.addr(): 1, f.canary.addr(): 1}
	if fmt.Sprint(weights) != fmt.Sprint(want) {
		t.Fatalf("weights = %v, want %v", weights, want)
	}
	// weighted round-robin: one full cycle of 40 requests gives exactly 1 canary, 1 baseline
	hits := get(t, f.kong.ProxyURL(), 400, nil)
	if hits["canary"] != 10 || hits["baseline"] != 10 || hits["stable-0"] != 190 || hits["stable-1"] != 190 {
		t.Fatalf("data plane split = %v, want canary 10 baseline 10 stable 190+190", hits)
	}
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 1000, Baseline: 1000}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Split(ctx(t)); got != (providers.Split{Canary: 1000, Baseline: 1000}) {
		t.Fatalf("Split() after 10%% = %v", got)
	}
	// PATCH, never PUT or a second POST, changes weights
	for _, q := range f.kong.Requests() {
		if strings.Contains(q.Path, "/targets/") && q.Method == "PUT" {
			t.Fatalf("weights changed with PUT: %+v", q)
		}
	}
}

func TestRouterRollbackUnderLoad(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := newRouter(t, f.config(ModeTargets))
	setUp(t, r, f)
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 10000}); err != nil { // worst case: stable at 0
		t.Fatal(err)
	}
	l := startLoad(f.kong.ProxyURL(), 4, 5000)
	l.waitFor(100)
	if err := r.Rollback(ctx(t)); err != nil {
		t.Fatal(err)
	}
	l.waitFor(100)
	ok, failed := l.finish()
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed during rollback: %v", len(failed), ok+len(failed), failed[:min(5, len(failed))])
	}
	ts := f.kong.Targets("web-up")
	if len(ts) != 2 {
		t.Fatalf("after rollback targets = %+v, want only the 2 stable ones", ts)
	}
	for _, tg := range ts {
		if tg.Weight != 100 {
			t.Fatalf("stable target %s weight %d, want its original 100", tg.Target, tg.Weight)
		}
	}
	if hits := get(t, f.kong.ProxyURL(), 20, nil); hits["stable-0"]+hits["stable-1"] != 20 {
		t.Fatalf("after rollback traffic = %v, want all on stable", hits)
	}
	got, err := r.Split(ctx(t))
	if err != nil || got != (providers.Split{}) {
		t.Fatalf("Split() after rollback = %v, %v", got, err)
	}
	t.Logf("rollback under load: %d requests, none failed", ok)
}

func TestRouterPromoteUnderLoad(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := newRouter(t, f.config(ModeTargets))
	setUp(t, r, f)
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 1000, Baseline: 1000}); err != nil {
		t.Fatal(err)
	}
	r.cfg.Propagation = 20 * time.Millisecond // requests keep flowing while old targets drain
	promoteStart := len(f.kong.Requests())
	l := startLoad(f.kong.ProxyURL(), 4, 5000)
	l.waitFor(100)
	if err := r.Promote(ctx(t)); err != nil {
		t.Fatal(err)
	}
	l.waitFor(100)
	ok, failed := l.finish()
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed during promote: %v", len(failed), ok+len(failed), failed[:min(5, len(failed))])
	}
	ts := f.kong.Targets("web-up")
	if len(ts) != 1 || ts[0].Target != f.canary.addr() || ts[0].Weight != 100 || len(ts[0].Tags) != 0 {
		t.Fatalf("after promote targets = %+v, want only the untagged canary with weight 100", ts)
	}
	if hits := get(t, f.kong.ProxyURL(), 10, nil); hits["canary"] != 10 {
		t.Fatalf("after promote traffic = %v", hits)
	}
	// the canary's weight went up (to 100) before any weight went to 0 or any target was deleted
	var order []string
	for _, q := range f.kong.Requests()[promoteStart:] {
		switch {
		case q.Method == "PATCH" && strings.Contains(q.Body, `"weight":100`):
			order = append(order, "up")
		case q.Method == "PATCH" && strings.Contains(q.Body, `"weight":0`), q.Method == "DELETE":
			order = append(order, "down")
		}
	}
	if len(order) == 0 || order[0] != "up" || !slices.Contains(order, "down") {
		t.Fatalf("promote order = %v, want the canary raised first", order)
	}
	t.Logf("promote under load: %d requests, none failed", ok)
}

func setUp(t *testing.T, r *Router, f *fixture) {
	t.Helper()
	if err := r.SetUpstreams(ctx(t), providers.Baseline, []string{f.baseline.URL}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
		t.Fatal(err)
	}
}

func TestSetUpstreamsConflicts(t *testing.T) {
	t.Parallel()
	t.Run("target of someone else", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		if _, err := f.kong.Create("", "targets", map[string]any{"upstream": "web-up", "target": f.canary.addr(), "weight": 0}); err != nil {
			t.Fatal(err)
		}
		r := newRouter(t, f.config(ModeTargets))
		err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL})
		if err == nil || !strings.Contains(err.Error(), "did not create") {
			t.Fatalf("err = %v, want a target this rollout did not create", err)
		}
	})
	t.Run("own target from an earlier attempt is adopted", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		if _, err := f.kong.Create("", "targets", map[string]any{"upstream": "web-up", "target": f.canary.addr(), "weight": 7,
			"tags": []string{"canaryctl", "cohort:canary", "rollout:r1"}}); err != nil {
			t.Fatal(err)
		}
		r := newRouter(t, f.config(ModeTargets))
		if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
			t.Fatal(err)
		}
		// An adopted target keeps its weight: a resumed run sets the step's split again; zeroing
		// it first would take a 50/50 step's share to nothing for a moment (proxy 503s).
		for _, tg := range f.kong.Targets("web-up") {
			if tg.Target == f.canary.addr() && tg.Weight != 7 {
				t.Fatalf("adopted canary weight %d, want its own 7", tg.Weight)
			}
		}
	})
	t.Run("another rollout's targets", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		if _, err := f.kong.Create("", "targets", map[string]any{"upstream": "web-up", "target": "10.9.9.9:80", "weight": 0,
			"tags": []string{"canaryctl", "cohort:canary", "rollout:other"}}); err != nil {
			t.Fatal(err)
		}
		r := newRouter(t, f.config(ModeTargets))
		err := r.Preflight(ctx(t))
		if err == nil || !strings.Contains(err.Error(), "rollout:other") {
			t.Fatalf("err = %v, want it to name rollout:other", err)
		}
	})
	t.Run("409 on a POST that raced", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		r := newRouter(t, f.config(ModeTargets))
		if err := r.Preflight(ctx(t)); err != nil {
			t.Fatal(err)
		}
		// the target appears after the router listed the targets: its POST gets 409
		if _, err := f.kong.Create("", "targets", map[string]any{"upstream": "web-up", "target": f.canary.addr(), "weight": 3,
			"tags": []string{"canaryctl", "cohort:canary", "rollout:r1"}}); err != nil {
			t.Fatal(err)
		}
		r.st.cohorts = map[providers.Cohort][]string{}
		err := r.applyOne(ctx(t), change{op: opCreate, addr: f.canary.addr(), weight: 0, tags: r.tags(providers.Canary)})
		if err != nil {
			t.Fatal(err)
		}
		saw409 := false
		for _, q := range f.kong.Requests() {
			saw409 = saw409 || q.Method == "POST" && q.Status == 409
		}
		if !saw409 {
			t.Fatal("no 409 seen")
		}
	})
}

func TestPagination(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i := 0; i < 1100; i++ { // go-kong pages by 1000
		if _, err := f.kong.Create("", "targets", map[string]any{"upstream": "web-up", "target": fmt.Sprintf("10.1.%d.%d:80", i/250, i%250), "weight": 0}); err != nil {
			t.Fatal(err)
		}
	}
	r := newRouter(t, f.config(ModeTargets))
	setUp(t, r, f)
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 500, Baseline: 500}); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Split(ctx(t)); err != nil || got != (providers.Split{Canary: 500, Baseline: 500}) {
		t.Fatalf("Split() = %v, %v", got, err)
	}
	if err := r.Rollback(ctx(t)); err != nil {
		t.Fatal(err)
	}
	paged := false
	for _, q := range f.kong.Requests() {
		paged = paged || strings.Contains(q.Query, "offset=")
	}
	if !paged {
		t.Fatal("no request followed an offset: pagination not exercised")
	}
	if n := len(f.kong.Targets("web-up")); n != 1102 {
		t.Fatalf("after rollback %d targets, want 1102", n)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  []kongtest.Option
		cfg   func(*Config)
		run   func(*Router, *fixture) error
		is    error
		wants []string
	}{
		{
			name:  "service not found",
			cfg:   func(c *Config) { c.Service = "nope" },
			run:   func(r *Router, _ *fixture) error { return r.Preflight(t.Context()) },
			is:    providers.ErrNotFound,
			wants: []string{`service "nope"`, "gateway.kong.service"},
		},
		{
			name:  "upstream not found",
			cfg:   func(c *Config) { c.Service, c.Upstream = "", "nope" },
			run:   func(r *Router, _ *fixture) error { return r.Preflight(t.Context()) },
			is:    providers.ErrNotFound,
			wants: []string{`upstream "nope"`, "gateway.kong.upstream"},
		},
		{
			name:  "wrong token",
			opts:  []kongtest.Option{kongtest.WithToken("s3cret")},
			cfg:   func(c *Config) { c.Token = "wrong" },
			run:   func(r *Router, _ *fixture) error { return r.Preflight(t.Context()) },
			is:    ErrUnauthorized,
			wants: []string{"401", "token is wrong", "CANARYCTL_KONG_TOKEN"},
		},
		{
			name: "read-only token",
			opts: []kongtest.Option{kongtest.WithReadOnlyToken("ro")},
			cfg:  func(c *Config) { c.Token = "ro" },
			run: func(r *Router, f *fixture) error {
				return r.SetUpstreams(t.Context(), providers.Canary, []string{f.canary.URL})
			},
			is:    ErrUnauthorized,
			wants: []string{"403", "token is wrong", "lacks permission"},
		},
		{
			name: "schema violation field by field",
			run: func(r *Router, _ *fixture) error {
				return r.SetUpstreams(t.Context(), providers.Canary, []string{strings.Repeat("x", 64) + ".example:80"})
			},
			wants: []string{"(400 schema violation)", "target: Invalid target ('" + strings.Repeat("x", 64) + ".example:80'); not a valid hostname or ip address"},
		},
		{
			name: "5xx retried then unavailable",
			run: func(r *Router, f *fixture) error {
				f.kong.InjectOutage(kongtest.Outage{Kind: kongtest.Fault503})
				return r.Preflight(t.Context())
			},
			is:    ErrUnavailable,
			wants: []string{"after 5 attempts", "503"},
		},
		{
			name: "timeouts retried then unavailable",
			cfg:  func(c *Config) { c.Timeout = 50e6; c.Retries = 2 },
			run: func(r *Router, f *fixture) error {
				f.kong.InjectOutage(kongtest.Outage{Kind: kongtest.FaultTimeout})
				return r.Preflight(t.Context())
			},
			is:    ErrUnavailable,
			wants: []string{"after 3 attempts", "deadline exceeded"},
		},
		{
			name: "connection refused",
			cfg:  func(c *Config) { c.Retries = 1 },
			run: func(r *Router, f *fixture) error {
				f.kong.InjectOutage(kongtest.Outage{Kind: kongtest.FaultRefused})
				return r.Preflight(t.Context())
			},
			is:    ErrUnavailable,
			wants: []string{"after 2 attempts", "refused"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tc.opts...)
			cfg := f.config(ModeTargets)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			r := newRouter(t, cfg)
			err := tc.run(r, f)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestOutageMidRollout: Kong's Admin API fails while a step is being set; the step fails after its
// retries, then (the outage over) the rollback returns all traffic to stable.
func TestOutageMidRollout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := newRouter(t, f.config(ModeTargets))
	setUp(t, r, f)
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 250, Baseline: 250}); err != nil {
		t.Fatal(err)
	}
	f.kong.InjectOutage(kongtest.Outage{Kind: kongtest.Fault503, After: 2, For: 5}) // list + one PATCH go through
	err := r.SetSplit(ctx(t), providers.Split{Canary: 1000, Baseline: 1000})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("SetSplit during outage: %v, want ErrUnavailable", err)
	}
	t.Logf("step error: %v", err)
	if err := r.Rollback(ctx(t)); err != nil {
		t.Fatalf("rollback after the outage: %v", err)
	}
	if hits := get(t, f.kong.ProxyURL(), 20, nil); hits["stable-0"]+hits["stable-1"] != 20 {
		t.Fatalf("after rollback traffic = %v, want all on stable", hits)
	}
	// a transient outage during the rollback itself is ridden out by the retries
	setUp(t, r, f)
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 250, Baseline: 250}); err != nil {
		t.Fatal(err)
	}
	f.kong.InjectOutage(kongtest.Outage{Kind: kongtest.FaultServerError, After: 1, For: 2})
	if err := r.Rollback(ctx(t)); err != nil {
		t.Fatalf("rollback through a short outage: %v", err)
	}
	if n := len(f.kong.Targets("web-up")); n != 2 {
		t.Fatalf("%d targets after rollback, want 2", n)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	ok := Config{AdminURL: "http://127.0.0.1:8001", Service: "web", RolloutID: "r1"}
	tests := []struct {
		name  string
		mod   func(*Config)
		field string
	}{
		{"no admin url", func(c *Config) { c.AdminURL = "" }, "adminURL"},
		{"bad admin url", func(c *Config) { c.AdminURL = "kong:8001" }, "adminURL"},
		{"no service", func(c *Config) { c.Service = "" }, "service"},
		{"both", func(c *Config) { c.Upstream = "u" }, "upstream"},
		{"bad mode", func(c *Config) { c.Mode = "magic" }, "mode"},
		{"no rollout id", func(c *Config) { c.RolloutID = "" }, "rolloutID"},
		{"token and file", func(c *Config) { c.Token = "a"; c.TokenFile = "/x" }, "tokenFile"},
		{"missing token file", func(c *Config) { c.TokenFile = "/nonexistent/token" }, "tokenFile"},
		{"hash without key", func(c *Config) { c.Mode = ModeHash; c.HashOn = "header" }, "hashOnHeader"},
		{"hash on what", func(c *Config) { c.Mode = ModeHash; c.HashOn = "moon" }, "hashOn"},
		{"bluegreen without green", func(c *Config) { c.Mode = ModeBlueGreen }, "greenUpstream"},
		{"upstream only with plugin mode", func(c *Config) { c.Service = ""; c.Upstream = "u"; c.Mode = ModeCanaryPlugin }, "service"},
		{"dbless log endpoint", func(c *Config) { c.Mode = ModeDBLess; c.LogEndpoint = "http://x/" }, "log.manual"},
		{"bad ca file", func(c *Config) { c.TLS.CAFile = "/nonexistent/ca.pem" }, "tls.caFile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.mod(&c)
			_, err := New(c)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !ce.InvalidInput() {
				t.Fatalf("New() error = %v, want a ConfigError on %s", err, tc.field)
			}
		})
	}
	if _, err := New(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8080", "https://web.internal", "10.0.0.1", "[::1]:80", "http://[fe80::1]:9/", "Host:0", "a:b:c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := NormalizeAddress(s)
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(out)
		if err != nil || host == "" {
			t.Fatalf("NormalizeAddress(%q) = %q: not host:port", s, out)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("NormalizeAddress(%q) = %q: bad port", s, out)
		}
		if again, err := NormalizeAddress(out); err != nil || again != out {
			t.Fatalf("NormalizeAddress not idempotent: %q -> %q -> %q, %v", s, out, again, err)
		}
	})
}

// TestResume: a second process (a new Router, as after `run --resume`) adopts the targets the first
// one created, also when the last step had moved all weight off stable, and can roll back.
func TestResume(t *testing.T) {
	t.Parallel()
	for _, split := range []providers.Split{{Canary: 250, Baseline: 250}, {Canary: 5000, Baseline: 5000}} {
		t.Run(split.String(), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			r1 := newRouter(t, f.config(ModeTargets))
			setUp(t, r1, f)
			if err := r1.SetSplit(ctx(t), split); err != nil {
				t.Fatal(err)
			}
			r2 := newRouter(t, f.config(ModeTargets)) // the process crashed; a new one resumes
			if got, err := r2.Split(ctx(t)); err != nil || got != split {
				t.Fatalf("resumed Split() = %v, %v; want %v", got, err, split)
			}
			if err := r2.SetSplit(ctx(t), providers.Split{Canary: 1000, Baseline: 1000}); err != nil {
				t.Fatal(err)
			}
			if err := r2.Rollback(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if hits := get(t, f.kong.ProxyURL(), 20, nil); hits["stable-0"]+hits["stable-1"] != 20 {
				t.Fatalf("after the resumed rollback traffic = %v", hits)
			}
			if n := len(f.kong.Targets("web-up")); n != 2 {
				t.Fatalf("%d targets after rollback, want 2", n)
			}
		})
	}
}

// TestRollbackAfterFailedPromote: a promotion that failed half-way is rolled back without ever
// leaving the upstream without capacity.
func TestRollbackAfterFailedPromote(t *testing.T) {
	t.Parallel()
	admin := func(t *testing.T, f *fixture, method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, f.kong.AdminURL()+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %v %v", method, path, resp, err)
		}
		_ = resp.Body.Close()
	}
	t.Run("canary untagged, stable at 0", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		r := newRouter(t, f.config(ModeTargets))
		setUp(t, r, f)
		if err := r.SetSplit(ctx(t), providers.Split{Canary: 1000, Baseline: 1000}); err != nil {
			t.Fatal(err)
		}
		admin(t, f, "PATCH", "/upstreams/web-up/targets/"+f.canary.addr(), `{"weight":100,"tags":[]}`)
		for _, s := range f.stable {
			admin(t, f, "PATCH", "/upstreams/web-up/targets/"+s.addr(), `{"weight":0}`)
		}
		if err := r.Rollback(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if hits := get(t, f.kong.ProxyURL(), 20, nil); hits["stable-0"]+hits["stable-1"] != 20 {
			t.Fatalf("after rollback traffic = %v, want all on stable", hits)
		}
	})
	t.Run("old stable already deleted", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		r := newRouter(t, f.config(ModeTargets))
		setUp(t, r, f)
		if err := r.SetSplit(ctx(t), providers.Split{Canary: 1000, Baseline: 1000}); err != nil {
			t.Fatal(err)
		}
		for _, s := range f.stable {
			admin(t, f, "DELETE", "/upstreams/web-up/targets/"+s.addr(), "")
		}
		err := r.Rollback(ctx(t))
		if err == nil || !strings.Contains(err.Error(), "old stable targets are gone") {
			t.Fatalf("Rollback = %v, want a refusal", err)
		}
		if hits := get(t, f.kong.ProxyURL(), 20, nil); hits["canary"]+hits["baseline"] != 20 {
			t.Fatalf("traffic = %v: the upstream lost its capacity", hits)
		}
	})
}
