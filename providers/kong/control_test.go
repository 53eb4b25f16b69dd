package kong

import (
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
)

// TestNoBaselineModesAttributeStable: in the modes without a baseline cohort the kong-log source
// attributes stable's requests to stable (the rollout's control there) and the canary's to the
// canary, with none left unattributed: canary-plugin learns stable from SetUpstreams (the Service
// may point at a plain host), bluegreen from the blue upstream's targets.
func TestNoBaselineModesAttributeStable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode  Mode
		split providers.Split
		// both: stable and canary serve at once (the plugin's percentage); otherwise all or nothing
		both bool
	}{
		{ModeCanaryPlugin, providers.Split{Canary: 5000}, true},
		{ModeBlueGreen, providers.Split{Canary: providers.BasisPoints}, false},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, kongtest.WithEnterprise())
			rec, err := NewLogReceiver(LogConfig{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rec.Close() })
			cfg := f.config(tc.mode)
			cfg.GreenUpstream = "web-green"
			cfg.Log, cfg.LogEndpoint, cfg.LogFlush = rec, rec.URL(), 50*time.Millisecond
			r := newRouter(t, cfg)
			if err := r.SetUpstreams(ctx(t), providers.Stable, []string{f.stable[0].URL, f.stable[1].URL}); err != nil {
				t.Fatal(err)
			}
			if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
				t.Fatal(err)
			}
			before := get(t, f.kong.ProxyURL(), 20, nil)
			if err := r.SetSplit(ctx(t), tc.split); err != nil {
				t.Fatal(err)
			}
			during := get(t, f.kong.ProxyURL(), 60, nil)
			if before["canary"] != 0 || during["canary"] == 0 || tc.both != (during["stable-0"]+during["stable-1"] > 0) {
				t.Fatalf("answers before the split %v, after %v", before, during)
			}
			if err := rec.WaitReceived(ctx(t), 80); err != nil {
				t.Fatal(err)
			}
			reqs, err := rec.Requests(ctx(t), time.Time{}, time.Now().Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			got := map[providers.Cohort]int{}
			for _, q := range reqs {
				got[q.Cohort]++
			}
			want := map[providers.Cohort]int{providers.Stable: 20 + during["stable-0"] + during["stable-1"], providers.Canary: during["canary"]}
			if _, unattributed := rec.Stats(); unattributed != 0 || got[providers.Stable] != want[providers.Stable] || got[providers.Canary] != want[providers.Canary] {
				t.Fatalf("kong-log attributed %v (%d unattributed), want %v", got, unattributed, want)
			}
			if err := r.Rollback(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if after := get(t, f.kong.ProxyURL(), 10, nil); after["canary"] != 0 {
				t.Fatalf("after rollback %v", after)
			}
		})
	}
}

// TestTargetsWithoutBaseline: mode targets also runs a rollout compared with stable (analysis.control
// stable): only the canary's target is added, the split has no baseline share and reads back exactly,
// and a rollback leaves the stable targets with their weights.
func TestTargetsWithoutBaseline(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := newRouter(t, f.config(ModeTargets))
	if err := r.SetUpstreams(ctx(t), providers.Stable, []string{f.stable[0].URL, f.stable[1].URL}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetUpstreams(ctx(t), providers.Canary, []string{f.canary.URL}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []providers.Split{{Canary: 250}, {Canary: 1000}, {Canary: 5000}} {
		if err := r.SetSplit(ctx(t), want); err != nil {
			t.Fatal(err)
		}
		got, err := r.Split(ctx(t))
		if err != nil || got != want {
			t.Fatalf("split %v (%v), want %v", got, err, want)
		}
	}
	if ts := f.kong.Targets("web-up"); len(ts) != 3 {
		t.Fatalf("targets %+v: want the two stable ones and the canary", ts)
	}
	if err := r.Rollback(ctx(t)); err != nil {
		t.Fatal(err)
	}
	ts := f.kong.Targets("web-up")
	if len(ts) != 2 || ts[0].Weight != 100 || ts[1].Weight != 100 {
		t.Fatalf("after rollback %+v: want the stable targets at weight 100", ts)
	}
}
