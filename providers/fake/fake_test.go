package fake

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

func TestFaultsFailNCallsThenRecover(t *testing.T) {
	t.Parallel()
	g := NewGateway()
	g.Fail("Rollback", 2, nil)
	for i, want := range []bool{true, true, false} {
		err := g.Rollback(t.Context())
		if (err != nil) != want || (err != nil && !errors.Is(err, ErrInjected)) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	custom := errors.New("boom")
	g.Fail("Split", 1, custom)
	if _, err := g.Split(t.Context()); !errors.Is(err, custom) {
		t.Fatalf("custom fault: %v", err)
	}
}

func TestGatewayRulesAndContext(t *testing.T) {
	t.Parallel()
	g := NewGateway()
	if err := g.SetSplit(t.Context(), providers.Split{Canary: 100, Baseline: 100}); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("split without upstreams: %v", err)
	}
	g.SetUpstreams(t.Context(), providers.Canary, []string{"http://c"})
	g.SetUpstreams(t.Context(), providers.Baseline, []string{"http://b"})
	if err := g.SetSplit(t.Context(), providers.Split{Canary: 9000, Baseline: 2000}); !errors.Is(err, providers.ErrInvalidSplit) {
		t.Fatalf("invalid split: %v", err)
	}
	if err := g.SetSplit(t.Context(), providers.Split{Canary: 100, Baseline: 100}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := g.Rollback(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("rollback on a cancelled context: %v", err)
	}
	if err := g.Promote(t.Context()); err != nil || g.Upstreams(providers.Stable)[0] != "http://c" || g.Current() != (providers.Split{}) {
		t.Fatalf("promote: %v %v %v", err, g.Upstreams(providers.Stable), g.Current())
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewClock(t0)
	ch := c.After(time.Minute)
	c.Advance(59 * time.Second)
	select {
	case <-ch:
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Second)
	if got := <-ch; !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("fired at %v", got)
	}
	c.SetAuto(true)
	if got := <-c.After(time.Hour); !got.Equal(t0.Add(61*time.Minute)) || !c.Now().Equal(got) {
		t.Fatalf("auto: %v now %v", got, c.Now())
	}
}
