package kong

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
)

func TestModeHash(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.config(ModeHash)
	cfg.HashOn, cfg.HashOnHeader = "header", "X-User"
	r := newRouter(t, cfg)
	setUp(t, r, f)
	up := f.kong.Entity("upstreams", "web-up")
	if up["hash_on"] != "header" || up["hash_on_header"] != "X-User" || up["algorithm"] != "consistent-hashing" {
		t.Fatalf("upstream after SetUpstreams = hash_on %v header %v algorithm %v", up["hash_on"], up["hash_on_header"], up["algorithm"])
	}
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 2500, Baseline: 2500}); err != nil {
		t.Fatal(err)
	}
	// every user sticks to one cohort; across users the cohorts all get traffic
	seen := map[string]int{}
	for u := 0; u < 60; u++ {
		hits := get(t, f.kong.ProxyURL(), 5, map[string]string{"X-User": fmt.Sprintf("user-%d", u)})
		if len(hits) != 1 {
			t.Fatalf("user-%d was not sticky: %v", u, hits)
		}
		for k := range hits {
			seen[k]++
		}
	}
	if seen["canary"] == 0 || seen["baseline"] == 0 || seen["stable-0"]+seen["stable-1"] == 0 {
		t.Fatalf("users per cohort = %v, want every cohort used", seen)
	}
	if err := r.Rollback(ctx(t)); err != nil {
		t.Fatal(err)
	}
	up = f.kong.Entity("upstreams", "web-up")
	if up["hash_on"] != "none" || up["algorithm"] != "round-robin" {
		t.Fatalf("upstream after rollback = hash_on %v algorithm %v, want none / round-robin restored", up["hash_on"], up["algorithm"])
	}
}

func TestModeBlueGreen(t *testing.T) {
	t.Parallel()
	for _, end := range []string{"promote", "rollback"} {
		t.Run(end, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			cfg := f.config(ModeBlueGreen)
			cfg.GreenUpstream = "web-green"
			r := newRouter(t, cfg)
			if err := r.SetUpstreams(ctx(t), providers.Baseline, []string{f.baseline.URL}); !isUnsupported(err) {
				t.Fatalf("baseline in bluegreen: %v, want ErrUnsupported", err)
			}
			if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
				t.Fatal(err)
			}
			if err := r.SetSplit(ctx(t), providers.Split{Canary: 250}); err == nil || !strings.Contains(err.Error(), "0% or 100%") {
				t.Fatalf("partial split in bluegreen: %v", err)
			}
			if hits := get(t, f.kong.ProxyURL(), 10, nil); hits["canary"] != 0 {
				t.Fatalf("canary got traffic before the switch: %v", hits)
			}
			if err := r.SetSplit(ctx(t), providers.Split{Canary: 10000}); err != nil {
				t.Fatal(err)
			}
			if got, _ := r.Split(ctx(t)); got.Canary != 10000 {
				t.Fatalf("Split() = %v", got)
			}
			if hits := get(t, f.kong.ProxyURL(), 10, nil); hits["canary"] != 10 {
				t.Fatalf("after the switch traffic = %v", hits)
			}
			if end == "promote" {
				if err := r.Promote(ctx(t)); err != nil {
					t.Fatal(err)
				}
				if h := f.kong.Entity("services", "web")["host"]; h != "web-green" {
					t.Fatalf("service host = %v, want web-green", h)
				}
				return
			}
			if err := r.Rollback(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if h := f.kong.Entity("services", "web")["host"]; h != "web-up" {
				t.Fatalf("service host after rollback = %v, want web-up", h)
			}
			if f.kong.Entity("upstreams", "web-green") != nil {
				t.Fatal("the green upstream canaryctl created is still there")
			}
			if hits := get(t, f.kong.ProxyURL(), 10, nil); hits["stable-0"]+hits["stable-1"] != 10 {
				t.Fatalf("after rollback traffic = %v", hits)
			}
		})
	}
}

func TestModeDBLess(t *testing.T) {
	t.Parallel()
	f := newFixture(t, kongtest.WithDBLess())
	r := newRouter(t, f.config(ModeDBLess))
	setUp(t, r, f)
	f.kong.BusyConfig(1) // Kong still loading: 429, Retry-After: 1
	start := time.Now()
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 250, Baseline: 250}); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("SetSplit returned after %v; Retry-After: 1 was not honoured", waited)
	}
	if got, err := r.Split(ctx(t)); err != nil || got != (providers.Split{Canary: 250, Baseline: 250}) {
		t.Fatalf("Split() = %v, %v", got, err)
	}
	if hits := get(t, f.kong.ProxyURL(), 40, nil); hits["canary"] != 1 || hits["baseline"] != 1 {
		t.Fatalf("data plane = %v, want 1 canary and 1 baseline in 40", hits)
	}
	var posts, status429, notModified int
	for _, q := range f.kong.Requests() {
		if q.Path == "/config" && q.Method == http.MethodPost {
			posts++
			if !strings.Contains(q.Query, "check_hash=1") {
				t.Fatalf("POST /config without check_hash: %+v", q)
			}
			switch q.Status {
			case 429:
				status429++
			case 304:
				notModified++
			}
		}
		if q.Method == http.MethodPatch || q.Method == http.MethodPut {
			t.Fatalf("entity write in DB-less mode: %+v", q)
		}
	}
	if status429 != 1 {
		t.Fatalf("%d answers 429, want 1", status429)
	}
	if err := r.Rollback(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.kong.Targets("web-up")); n != 2 {
		t.Fatalf("%d targets after rollback, want 2", n)
	}
	t.Logf("%d POST /config (%d answered 429, %d answered 304)", posts, status429, notModified)
}

func TestModeCanaryPlugin(t *testing.T) {
	t.Parallel()
	t.Run("OSS Kong has no canary plugin", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		r := newRouter(t, f.config(ModeCanaryPlugin))
		if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
			t.Fatal(err)
		}
		err := r.SetSplit(ctx(t), providers.Split{Canary: 1000})
		if err == nil || !strings.Contains(err.Error(), "name: plugin 'canary' not enabled") {
			t.Fatalf("err = %v, want Kong's schema violation on name", err)
		}
	})
	for _, end := range []string{"promote", "rollback"} {
		t.Run(end, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kongtest.WithEnterprise())
			cfg := f.config(ModeCanaryPlugin)
			cfg.CanaryHash = "header"
			cfg.CanaryHashHeader = "X-User"
			r := newRouter(t, cfg)
			if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
				t.Fatal(err)
			}
			if err := r.SetSplit(ctx(t), providers.Split{Canary: 2500}); err != nil {
				t.Fatal(err)
			}
			if got, _ := r.Split(ctx(t)); got.Canary != 2500 {
				t.Fatalf("Split() = %v", got)
			}
			users := map[string]int{}
			for u := 0; u < 200; u++ {
				for k := range get(t, f.kong.ProxyURL(), 1, map[string]string{"X-User": fmt.Sprintf("u%d", u)}) {
					users[k]++
				}
			}
			if users["canary"] < 25 || users["canary"] > 75 {
				t.Fatalf("canary got %d of 200 users at 25%%", users["canary"])
			}
			if err := r.SetSplit(ctx(t), providers.Split{Canary: 5000}); err != nil {
				t.Fatal(err)
			}
			if end == "promote" {
				if err := r.Promote(ctx(t)); err != nil {
					t.Fatal(err)
				}
				svc := f.kong.Entity("services", "web")
				if svc["host"] != "127.0.0.1" || fmt.Sprint(svc["port"]) != strings.Split(f.canary.addr(), ":")[1] {
					t.Fatalf("service after promote = %v:%v, want the canary", svc["host"], svc["port"])
				}
			} else if err := r.Rollback(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if ps := f.kong.Plugins(); len(ps) != 0 {
				t.Fatalf("plugins left: %v", ps)
			}
			want := "canary"
			if end == "rollback" {
				want = "stable"
			}
			hits := get(t, f.kong.ProxyURL(), 10, nil)
			n := 0
			for k, v := range hits {
				if strings.HasPrefix(k, want) {
					n += v
				}
			}
			if n != 10 {
				t.Fatalf("after %s traffic = %v, want all on %s", end, hits, want)
			}
		})
	}
}

func isUnsupported(err error) bool { return errors.Is(err, ErrUnsupported) }

func TestKongLog(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bad := newBackend(t, "canary", 500)
	f.canary = bad
	rec, err := NewLogReceiver(LogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rec.Close() })
	cfg := f.config(ModeTargets)
	cfg.Log, cfg.LogEndpoint = rec, rec.URL()
	r := newRouter(t, cfg)
	since := time.Now().Add(-time.Second)
	setUp(t, r, f)
	if err := r.SetSplit(ctx(t), providers.Split{Canary: 2500, Baseline: 2500}); err != nil {
		t.Fatal(err)
	}
	var logPlugin map[string]any
	for _, p := range f.kong.Plugins() {
		if p["name"] == "http-log" {
			logPlugin = p
		}
	}
	if logPlugin == nil {
		t.Fatal("no http-log plugin on the service")
	}
	get(t, f.kong.ProxyURL()+"/checkout/pay/42", 200, nil) // 50 canary (500), 50 baseline, 100 stable
	// Kong's queue sends batches at most max_coalescing_delay (1 s) apart: wait for all 200 entries
	wctx, cancel := context.WithTimeout(ctx(t), 10*time.Second)
	defer cancel()
	if err := rec.WaitReceived(wctx, 200); err != nil {
		t.Fatal(err)
	}
	reqs, err := rec.Requests(ctx(t), since, time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	count := map[providers.Cohort]int{}
	errs := map[providers.Cohort]int{}
	for _, q := range reqs {
		// analysis.routes: the Kong route that matched, and the path's template
		if q.Route != "web" || q.Path != "/checkout/pay/{id}" {
			t.Fatalf("request %+v: want route web (the fixture's), path /checkout/pay/{id}", q)
		}
		count[q.Cohort]++
		if q.Status >= 500 {
			errs[q.Cohort]++
		}
	}
	if count[providers.Canary] != 50 || count[providers.Baseline] != 50 || count[providers.Stable] != 100 {
		t.Fatalf("requests per cohort = %v, want canary 50 baseline 50 stable 100", count)
	}
	if errs[providers.Canary] != 50 || errs[providers.Baseline] != 0 || errs[providers.Stable] != 0 {
		t.Fatalf("5xx per cohort = %v, want only the canary's 50", errs)
	}
	if err := r.Rollback(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, p := range f.kong.Plugins() {
		if p["name"] == "http-log" {
			t.Fatal("http-log plugin left after rollback")
		}
	}
}
