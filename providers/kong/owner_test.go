package kong

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// TestOwnerMarker: two routers of the same rollout id (two runners of one service) share Kong's
// ownership marker: the second claim is refused naming the first, a renewal by a runner whose
// marker was taken over is refused, release deletes only one's own marker, and of many concurrent
// claimers exactly one wins.
func TestOwnerMarker(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a, b := newRouter(t, f.config(ModeTargets)), newRouter(t, f.config(ModeTargets))
	ha := providers.Holder{Host: "ci-1", PID: 11, User: "alice"}
	hb := providers.Holder{Host: "ci-2", PID: 22, User: "bob"}
	la, err := a.Claim(ctx(t), providers.Claim{Service: "web", RunID: "run-a", Holder: ha, TTL: time.Minute})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	_, err = b.Claim(ctx(t), providers.Claim{Service: "web", RunID: "run-b", Holder: hb, TTL: time.Minute})
	var oe *providers.OwnedError
	if !errors.As(err, &oe) || oe.Owner.RunID != "run-a" || oe.Owner.Holder != ha || oe.Owner.Token != "" || oe.Expired {
		t.Fatalf("second claim: %v, want OwnedError naming run-a held by alice", err)
	}
	if la, err = a.Renew(ctx(t), la, time.Minute); err != nil {
		t.Fatalf("renew: %v", err)
	}
	// The same run resumed by another runner takes the marker over; the old holder's renewal fails.
	lb, err := b.Claim(ctx(t), providers.Claim{Service: "web", RunID: "run-a", Holder: hb, TTL: time.Minute, Resume: true})
	if err != nil {
		t.Fatalf("resume takeover: %v", err)
	}
	if _, err := a.Renew(ctx(t), la, time.Minute); !errors.Is(err, providers.ErrLeaseLost) {
		t.Fatalf("renew after takeover: %v, want ErrLeaseLost", err)
	}
	if err := a.Release(ctx(t), la); err != nil {
		t.Fatal(err)
	}
	if o, err := b.Owner(ctx(t)); err != nil || o == nil || o.Holder != hb {
		t.Fatalf("owner after a stale release: %+v %v", o, err)
	}
	// An expired lease of another run needs force.
	if err := b.Release(ctx(t), lb); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx(t), providers.Claim{Service: "web", RunID: "run-b", Holder: hb, TTL: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // the lease's own TTL; not a wait for an event
	if _, err := a.Claim(ctx(t), providers.Claim{Service: "web", RunID: "run-c", Holder: ha, TTL: time.Minute}); !errors.As(err, &oe) || !oe.Expired {
		t.Fatalf("claim of an expired lease without force: %v", err)
	}
	lc, err := a.Claim(ctx(t), providers.Claim{Service: "web", RunID: "run-c", Holder: ha, TTL: time.Minute, Force: true})
	if err != nil {
		t.Fatalf("forced takeover of an expired lease: %v", err)
	}
	if err := a.Release(ctx(t), lc); err != nil {
		t.Fatal(err)
	}
	// Eight runners race for a free service: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 8 {
		r := newRouter(t, f.config(ModeTargets))
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.Claim(ctx(t), providers.Claim{Service: "web", RunID: "race", Holder: providers.Holder{PID: i}, TTL: time.Minute})
			if err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			} else if !errors.Is(err, providers.ErrOwned) {
				t.Errorf("racing claim: %v", err)
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d of 8 racing claimers won, want 1", won)
	}
}
